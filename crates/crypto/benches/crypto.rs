//! Criterion benches for the crypto hot paths: signing and verification, and
//! the box constructions a broker and client run per message.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use claudemesh_crypto::boxes::{SharedBoxKey, box_decrypt, box_encrypt};
use claudemesh_crypto::{Nonce, SigningKey, SymmetricKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn signatures(c: &mut Criterion) {
    let key = SigningKey::from_seed(&[1; 32]);
    let public = key.public();
    let msg = vec![0x5a; 256];
    let sig = key.sign(&msg);
    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_256B", |b| b.iter(|| key.sign(black_box(&msg))));
    g.bench_function("verify_strict_256B", |b| {
        b.iter(|| public.verify(black_box(&msg), black_box(&sig)).unwrap())
    });
    g.finish();
}

fn boxes(c: &mut Criterion) {
    let alice = SigningKey::from_seed(&[2; 32]);
    let bob = SigningKey::from_seed(&[3; 32]);
    let (a_sec, b_sec) = (alice.to_box_secret(), bob.to_box_secret());
    let (a_pub, b_pub) = (alice.public().to_box_public(), bob.public().to_box_public());
    let shared = SharedBoxKey::new(&a_pub, &b_sec).unwrap();
    let key = SymmetricKey::from_bytes([4; 32]);
    for size in [256usize, 4096] {
        let body = vec![0x42; size];
        let nonce = Nonce::random();
        let boxed = box_encrypt(&body, &nonce, &b_pub, &a_sec).unwrap();
        let sealed = key.encrypt(&body, &nonce);
        let mut g = c.benchmark_group(format!("box_{size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("crypto_box_open", |b| {
            b.iter(|| box_decrypt(black_box(&boxed), &nonce, &a_pub, &b_sec).unwrap())
        });
        g.bench_function("crypto_box_open_precomputed", |b| {
            b.iter(|| shared.decrypt(black_box(&boxed), &nonce).unwrap())
        });
        g.bench_function("secretbox_open", |b| {
            b.iter(|| key.decrypt(black_box(&sealed), &nonce).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, signatures, boxes);
criterion_main!(benches);
