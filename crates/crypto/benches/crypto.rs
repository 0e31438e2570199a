//! Criterion benches for the crypto hot paths: signing and verification, the
//! box constructions, envelope seal/open, and verifying a long membership log.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use claudemesh_crypto::boxes::{SharedBoxKey, box_decrypt, box_encrypt};
use claudemesh_crypto::envelope::{
    Envelope, EnvelopeHeader, MessageId, OpeningKeys, Priority, SealingKey, Target,
};
use claudemesh_crypto::log::{LogBuilder, Role, verify_log};
use claudemesh_crypto::{MemberKey, Nonce, SessionIdentity, SigningKey, SymmetricKey};
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

struct Keys {
    member: SigningKey,
    shared: Option<SharedBoxKey>,
    group: SymmetricKey,
}

impl OpeningKeys for Keys {
    fn member_key(&self) -> &SigningKey {
        &self.member
    }
    fn session_key(&self) -> Option<&SigningKey> {
        None
    }
    fn symmetric_key(&self, _: &Target, _: u64) -> Option<SymmetricKey> {
        Some(self.group.clone())
    }
    fn shared_box_key(
        &self,
        _: &claudemesh_crypto::PublicKey,
        _: &claudemesh_crypto::PublicKey,
    ) -> Option<SharedBoxKey> {
        self.shared.clone()
    }
}

fn envelopes(c: &mut Criterion) {
    const T: u64 = 1_764_000_000;
    let owner = SigningKey::from_seed(&[5; 32]);
    let mut log = LogBuilder::new(&owner, T);
    let bob = log.add_member(&owner, Role::Member, T).unwrap();
    let roster = log.roster().clone();
    let session = SessionIdentity::new(&owner, roster.mesh_id(), T, 3600).unwrap();
    let group = SymmetricKey::from_bytes([6; 32]);
    let header = |target: Target| EnvelopeHeader {
        mesh: roster.mesh_id(),
        epoch: 0,
        target,
        id: MessageId::random(),
        reply_to: None,
        priority: Priority::Next,
        sent_at: T * 1000,
        log_head: roster.head(),
    };
    let shared =
        SharedBoxKey::new(&session.public().to_box_public(), &bob.to_box_secret()).unwrap();
    let cold = Keys {
        member: bob.clone(),
        shared: None,
        group: group.clone(),
    };
    let warm = Keys {
        member: bob.clone(),
        shared: Some(shared),
        group: group.clone(),
    };
    for size in [256usize, 4096] {
        let body = vec![0x61; size];
        let dm = Envelope::seal(
            &session,
            header(Target::Member(MemberKey(bob.public()))),
            &body,
            SealingKey::Direct(&bob.public()),
        )
        .unwrap();
        let topic = Envelope::seal(
            &session,
            header(Target::Topic("t".into())),
            &body,
            SealingKey::Symmetric(&group),
        )
        .unwrap();
        let mut g = c.benchmark_group(format!("envelope_{size}B"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("seal_direct", |b| {
            b.iter(|| {
                Envelope::seal(
                    &session,
                    header(Target::Member(MemberKey(bob.public()))),
                    black_box(&body),
                    SealingKey::Direct(&bob.public()),
                )
                .unwrap()
            })
        });
        g.bench_function("seal_topic", |b| {
            b.iter(|| {
                Envelope::seal(
                    &session,
                    header(Target::Topic("t".into())),
                    black_box(&body),
                    SealingKey::Symmetric(&group),
                )
                .unwrap()
            })
        });
        g.bench_function("verify_open_direct", |b| {
            b.iter(|| dm.verify_and_open(&roster, &cold).unwrap())
        });
        g.bench_function("verify_open_direct_cached_key", |b| {
            b.iter(|| dm.verify_and_open(&roster, &warm).unwrap())
        });
        g.bench_function("verify_open_topic", |b| {
            b.iter(|| topic.verify_and_open(&roster, &cold).unwrap())
        });
        g.bench_function("verify_signature_only", |b| {
            b.iter(|| dm.verify_signature().unwrap())
        });
        g.finish();
    }
}

fn long_log(c: &mut Criterion) {
    let owner = SigningKey::from_seed(&[8; 32]);
    let mut log = LogBuilder::new(&owner, 1_764_000_000);
    // 1 genesis + 500 × (invite, admit) = 1001 entries, each signature checked.
    for _ in 0..500 {
        log.add_member(&owner, Role::Member, 1_764_000_000).unwrap();
    }
    let entries = log.entries().to_vec();
    assert_eq!(entries.len(), 1001);
    let mut g = c.benchmark_group("membership_log");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.sample_size(20);
    g.bench_function("verify_1001_entries", |b| {
        b.iter(|| verify_log(black_box(&entries)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, signatures, boxes, envelopes, long_log);
criterion_main!(benches);
