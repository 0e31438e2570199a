//! Byte-compatibility with libsodium: every expected value in
//! `vectors/libsodium.json` was computed by libsodium itself (PyNaCl 1.5.0,
//! libsodium 1.0.18; see `vectors/generate.py`). Python is not needed to run
//! this test; it only reads the committed JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use claudemesh_crypto::boxes::{SharedBoxKey, box_decrypt, box_encrypt, hkdf_sha256, open_sealed};
use claudemesh_crypto::{BoxSecretKey, Nonce, PublicKey, Signature, SigningKey, SymmetricKey};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/libsodium.json")).unwrap()
}

fn cases<'a>(v: &'a Value, name: &str) -> &'a Vec<Value> {
    let list = v[name]
        .as_array()
        .unwrap_or_else(|| panic!("no {name} vectors"));
    assert!(!list.is_empty(), "{name} is empty");
    list
}

fn h(case: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        case[field]
            .as_str()
            .unwrap_or_else(|| panic!("missing {field}")),
    )
    .unwrap()
}

fn h32(case: &Value, field: &str) -> [u8; 32] {
    h(case, field).try_into().unwrap()
}

fn nonce(case: &Value) -> Nonce {
    Nonce(h(case, "nonce").try_into().unwrap())
}

#[test]
fn seed_keypairs_match() {
    let v = vectors();
    for (i, c) in cases(&v, "sign_seed_keypair").iter().enumerate() {
        let k = SigningKey::from_seed(&h32(c, "seed"));
        assert_eq!(k.public().to_bytes().to_vec(), h(c, "pk"), "case {i}");
        assert_eq!(k.to_keypair_bytes().to_vec(), h(c, "sk"), "case {i}");
        let sk: [u8; 64] = h(c, "sk").try_into().unwrap();
        assert_eq!(SigningKey::from_keypair_bytes(&sk).unwrap(), k, "case {i}");
    }
}

#[test]
fn ed25519_to_curve25519_matches_clamped_bytes() {
    let v = vectors();
    for (i, c) in cases(&v, "ed25519_to_curve25519").iter().enumerate() {
        let sk: [u8; 64] = h(c, "ed_sk").try_into().unwrap();
        let k = SigningKey::from_keypair_bytes(&sk).unwrap();
        let pk = PublicKey::from_bytes(&h32(c, "ed_pk")).unwrap();
        assert_eq!(
            pk.to_box_public().0.to_vec(),
            h(c, "x_pk"),
            "public, case {i}"
        );
        assert_eq!(
            k.to_box_secret().as_bytes().to_vec(),
            h(c, "x_sk"),
            "secret, case {i}"
        );
        assert_eq!(
            BoxSecretKey::from_bytes(h32(c, "x_sk")).public(),
            pk.to_box_public()
        );
    }
}

#[test]
fn detached_signatures_match() {
    let v = vectors();
    for (i, c) in cases(&v, "sign_detached").iter().enumerate() {
        let k = SigningKey::from_seed(&h32(c, "seed"));
        let msg = h(c, "msg");
        let sig = k.sign(&msg);
        assert_eq!(sig.0.to_vec(), h(c, "sig"), "case {i} (len {})", msg.len());
        let theirs = Signature(h(c, "sig").try_into().unwrap());
        k.public().verify(&msg, &theirs).unwrap();
    }
}

#[test]
fn crypto_box_easy_matches_and_opens() {
    let v = vectors();
    for (i, c) in cases(&v, "crypto_box_easy").iter().enumerate() {
        let sender = SigningKey::from_seed(&h32(c, "sender_seed"));
        let recipient = SigningKey::from_seed(&h32(c, "recipient_seed"));
        let (msg, n, ct) = (h(c, "msg"), nonce(c), h(c, "ct"));
        let ours = box_encrypt(
            &msg,
            &n,
            &recipient.public().to_box_public(),
            &sender.to_box_secret(),
        )
        .unwrap();
        assert_eq!(ours, ct, "encrypt, case {i} (len {})", msg.len());
        let opened = box_decrypt(
            &ct,
            &n,
            &sender.public().to_box_public(),
            &recipient.to_box_secret(),
        )
        .unwrap();
        assert_eq!(&opened[..], &msg[..], "decrypt, case {i}");
        let shared =
            SharedBoxKey::new(&recipient.public().to_box_public(), &sender.to_box_secret())
                .unwrap();
        assert_eq!(shared.encrypt(&msg, &n), ct, "beforenm path, case {i}");
        // The precomputed key is libsodium's crypto_box_beforenm output.
        let from_libsodium = SymmetricKey::from_bytes(h32(c, "beforenm"));
        assert_eq!(
            from_libsodium.encrypt(&msg, &n),
            ct,
            "beforenm bytes, case {i}"
        );
    }
}

#[test]
fn libsodium_sealed_boxes_open() {
    let v = vectors();
    for (i, c) in cases(&v, "crypto_box_seal").iter().enumerate() {
        let recipient = SigningKey::from_seed(&h32(c, "recipient_seed"));
        let opened = open_sealed(&h(c, "ct"), &recipient.to_box_secret()).unwrap();
        assert_eq!(&opened[..], &h(c, "msg")[..], "case {i}");
        let other = SigningKey::from_seed(&[0xee; 32]);
        assert!(open_sealed(&h(c, "ct"), &other.to_box_secret()).is_err());
    }
}

#[test]
fn secretbox_matches() {
    let v = vectors();
    for (i, c) in cases(&v, "crypto_secretbox_easy").iter().enumerate() {
        let key = SymmetricKey::from_bytes(h32(c, "key"));
        let (msg, n, ct) = (h(c, "msg"), nonce(c), h(c, "ct"));
        assert_eq!(key.encrypt(&msg, &n), ct, "encrypt, case {i}");
        assert_eq!(
            &key.decrypt(&ct, &n).unwrap()[..],
            &msg[..],
            "decrypt, case {i}"
        );
    }
}

#[test]
fn argon2id_matches_crypto_pwhash() {
    let v = vectors();
    for (i, c) in cases(&v, "crypto_pwhash_argon2id").iter().enumerate() {
        let ops = c["opslimit"].as_u64().unwrap() as u32;
        let mem = c["memlimit"].as_u64().unwrap();
        // libsodium takes memory in bytes and fixes one lane; argon2 takes KiB.
        let params = Params::new((mem / 1024) as u32, ops, 1, Some(32)).unwrap();
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(&h(c, "password"), &h(c, "salt"), &mut out)
            .unwrap();
        assert_eq!(out.to_vec(), h(c, "out"), "case {i} (ops {ops}, mem {mem})");
    }
}

#[test]
fn xchacha20poly1305_with_aad_matches() {
    let v = vectors();
    for (i, c) in cases(&v, "xchacha20poly1305_ietf").iter().enumerate() {
        let cipher = XChaCha20Poly1305::new(&h32(c, "key").into());
        let n: [u8; 24] = h(c, "nonce").try_into().unwrap();
        let (msg, aad, ct) = (h(c, "msg"), h(c, "aad"), h(c, "ct"));
        let ours = cipher
            .encrypt(
                &XNonce::from(n),
                Payload {
                    msg: &msg,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(ours, ct, "encrypt, case {i}");
        let back = cipher
            .decrypt(
                &XNonce::from(n),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(back, msg, "decrypt, case {i}");
    }
}

#[test]
fn hkdf_matches_rfc5869() {
    let v = vectors();
    for (i, c) in cases(&v, "hkdf_sha256_rfc5869").iter().enumerate() {
        // Our key schedule always takes the first 32 bytes of the OKM.
        let okm = hkdf_sha256(&h(c, "ikm"), &h(c, "salt"), &h(c, "info"));
        assert_eq!(
            okm.as_bytes().to_vec(),
            h(c, "okm")[..32].to_vec(),
            "case {}",
            i + 1
        );
    }
}
