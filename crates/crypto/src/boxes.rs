//! Authenticated encryption, byte-compatible with libsodium: `crypto_box`
//! (direct messages), `crypto_box_seal` (keys sealed to one member),
//! `crypto_secretbox` (group, topic and broadcast bodies, profiles), and the
//! HKDF-SHA256 key schedule that turns an epoch's root key into the mesh,
//! topic and profile keys.
//!
//! Ciphertexts use libsodium's "easy" layout: the 16-byte Poly1305 tag first,
//! then the encrypted bytes. Opened plaintexts are returned in `Zeroizing`
//! buffers. A failed open never returns partial data.

use std::fmt;

use dryoc::classic::{crypto_box, crypto_secretbox};
use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::encoding::label;
use crate::ids::MeshId;
use crate::keys::{BoxPublicKey, BoxSecretKey, random_bytes};

/// Bytes a `crypto_box` / `crypto_secretbox` adds to a plaintext (the tag).
pub const MAC_BYTES: usize = 16;
/// Bytes `crypto_box_seal` adds (ephemeral public key + tag).
pub const SEAL_BYTES: usize = 48;
/// Nonce length of `crypto_box` and `crypto_secretbox` (XSalsa20).
pub const NONCE_BYTES: usize = 24;

/// Why a box could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoxError {
    /// Wrong key, wrong nonce, or the ciphertext was altered.
    #[error("ciphertext does not authenticate (wrong key or altered data)")]
    Authentication,
    /// Shorter than the authentication overhead.
    #[error("ciphertext is too short")]
    TooShort,
    /// The peer's public key is unusable (low order or non-canonical).
    #[error("unusable public key")]
    BadPublicKey,
}

/// A 24-byte nonce for `crypto_box` / `crypto_secretbox`. Always random.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; NONCE_BYTES]);

impl Nonce {
    /// 24 bytes from the OS CSPRNG (`randombytes_buf`).
    pub fn random() -> Self {
        Nonce(random_bytes())
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", hex::encode(self.0))
    }
}

crate::encoding::hex_serde!(Nonce, 24, |n: &Nonce| n.0, |b: [u8; 24]| Ok::<
    _,
    crate::encoding::DecodeError,
>(Nonce(b)));

/// `crypto_box_easy`: encrypts to `recipient` from `sender`.
pub fn box_encrypt(
    plaintext: &[u8],
    nonce: &Nonce,
    recipient: &BoxPublicKey,
    sender: &BoxSecretKey,
) -> Result<Vec<u8>, BoxError> {
    let mut out = vec![0u8; plaintext.len() + MAC_BYTES];
    crypto_box::crypto_box_easy(
        &mut out,
        plaintext,
        &nonce.0,
        recipient.as_bytes(),
        sender.as_bytes(),
    )
    .map_err(|_| BoxError::BadPublicKey)?;
    Ok(out)
}

/// `crypto_box_open_easy`: opens a box from `sender` to `recipient`.
pub fn box_decrypt(
    ciphertext: &[u8],
    nonce: &Nonce,
    sender: &BoxPublicKey,
    recipient: &BoxSecretKey,
) -> Result<Zeroizing<Vec<u8>>, BoxError> {
    if ciphertext.len() < MAC_BYTES {
        return Err(BoxError::TooShort);
    }
    let mut out = Zeroizing::new(vec![0u8; ciphertext.len() - MAC_BYTES]);
    crypto_box::crypto_box_open_easy(
        &mut out,
        ciphertext,
        &nonce.0,
        sender.as_bytes(),
        recipient.as_bytes(),
    )
    .map_err(|_| BoxError::Authentication)?;
    Ok(out)
}

/// A precomputed `crypto_box` shared key (`crypto_box_beforenm`) for one
/// pair of peers. Opening with it skips the X25519 multiplication, which is
/// most of the cost of a small box; cache one per peer pair.
#[derive(Clone)]
pub struct SharedBoxKey(Zeroizing<[u8; 32]>);

impl SharedBoxKey {
    /// `crypto_box_beforenm(their_public, my_secret)`.
    pub fn new(their_public: &BoxPublicKey, my_secret: &BoxSecretKey) -> Result<Self, BoxError> {
        crypto_box::crypto_box_beforenm(their_public.as_bytes(), my_secret.as_bytes())
            .map(|k| SharedBoxKey(Zeroizing::new(k)))
            .map_err(|_| BoxError::BadPublicKey)
    }

    /// `crypto_box_easy_afternm`; identical bytes to [`box_encrypt`].
    pub fn encrypt(&self, plaintext: &[u8], nonce: &Nonce) -> Vec<u8> {
        // The shared key is exactly a secretbox key (libsodium defines
        // crypto_box_easy_afternm as crypto_secretbox_easy).
        secretbox_encrypt_raw(plaintext, nonce, &self.0)
    }

    /// `crypto_box_open_easy_afternm`.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        nonce: &Nonce,
    ) -> Result<Zeroizing<Vec<u8>>, BoxError> {
        secretbox_decrypt_raw(ciphertext, nonce, &self.0)
    }
}

impl fmt::Debug for SharedBoxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedBoxKey(<redacted>)")
    }
}

/// `crypto_box_seal`: anonymous encryption to `recipient` (ephemeral sender).
pub fn seal(plaintext: &[u8], recipient: &BoxPublicKey) -> Result<Vec<u8>, BoxError> {
    let mut out = vec![0u8; plaintext.len() + SEAL_BYTES];
    crypto_box::crypto_box_seal(&mut out, plaintext, recipient.as_bytes())
        .map_err(|_| BoxError::BadPublicKey)?;
    Ok(out)
}

/// `crypto_box_seal_open`.
pub fn open_sealed(
    ciphertext: &[u8],
    recipient: &BoxSecretKey,
) -> Result<Zeroizing<Vec<u8>>, BoxError> {
    if ciphertext.len() < SEAL_BYTES {
        return Err(BoxError::TooShort);
    }
    let mut out = Zeroizing::new(vec![0u8; ciphertext.len() - SEAL_BYTES]);
    crypto_box::crypto_box_seal_open(
        &mut out,
        ciphertext,
        recipient.public().as_bytes(),
        recipient.as_bytes(),
    )
    .map_err(|_| BoxError::Authentication)?;
    Ok(out)
}

/// A 32-byte symmetric key (root, mesh, topic, profile, bundle keys).
/// Zeroized on drop, compared in constant time, never printed.
#[derive(Clone)]
pub struct SymmetricKey(Zeroizing<[u8; 32]>);

impl SymmetricKey {
    /// 32 bytes from the OS CSPRNG.
    pub fn generate() -> Self {
        SymmetricKey(Zeroizing::new(random_bytes()))
    }

    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SymmetricKey(Zeroizing::new(bytes))
    }

    /// Wraps a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self::from_bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `crypto_secretbox_easy` under this key.
    pub fn encrypt(&self, plaintext: &[u8], nonce: &Nonce) -> Vec<u8> {
        secretbox_encrypt_raw(plaintext, nonce, &self.0)
    }

    /// `crypto_secretbox_open_easy` under this key.
    pub fn decrypt(
        &self,
        ciphertext: &[u8],
        nonce: &Nonce,
    ) -> Result<Zeroizing<Vec<u8>>, BoxError> {
        secretbox_decrypt_raw(ciphertext, nonce, &self.0)
    }

    /// HKDF-SHA256 (RFC 5869) with this key as input keying material.
    pub fn hkdf(&self, salt: &[u8], info: &[u8]) -> SymmetricKey {
        hkdf_sha256(self.as_bytes(), salt, info)
    }
}

impl PartialEq for SymmetricKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for SymmetricKey {}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SymmetricKey(<redacted>)")
    }
}

/// HKDF-SHA256 extract-and-expand to 32 bytes.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8]) -> SymmetricKey {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte maximum: cannot fail.
    if hk.expand(info, okm.as_mut()).is_err() {
        unreachable!("HKDF-SHA256 can always expand to 32 bytes");
    }
    SymmetricKey(okm)
}

fn secretbox_encrypt_raw(plaintext: &[u8], nonce: &Nonce, key: &[u8; 32]) -> Vec<u8> {
    let mut out = vec![0u8; plaintext.len() + MAC_BYTES];
    // Only fails for lengths above 2^64 - 16 or a wrongly sized output.
    if crypto_secretbox::crypto_secretbox_easy(&mut out, plaintext, &nonce.0, key).is_err() {
        unreachable!("secretbox output buffer is sized exactly");
    }
    out
}

fn secretbox_decrypt_raw(
    ciphertext: &[u8],
    nonce: &Nonce,
    key: &[u8; 32],
) -> Result<Zeroizing<Vec<u8>>, BoxError> {
    if ciphertext.len() < MAC_BYTES {
        return Err(BoxError::TooShort);
    }
    let mut out = Zeroizing::new(vec![0u8; ciphertext.len() - MAC_BYTES]);
    crypto_secretbox::crypto_secretbox_open_easy(&mut out, ciphertext, &nonce.0, key)
        .map_err(|_| BoxError::Authentication)?;
    Ok(out)
}

/// The root key of one mesh epoch: 32 random bytes made by an admin's client
/// and sealed to each member in a `rekey` entry (or handed over in an invite
/// bundle). Every group key of the epoch is derived from it.
#[derive(Clone, PartialEq, Eq)]
pub struct EpochRootKey {
    /// The epoch number (0 at genesis, +1 per rekey).
    pub epoch: u64,
    key: SymmetricKey,
}

impl EpochRootKey {
    /// A fresh random root key for `epoch`.
    pub fn generate(epoch: u64) -> Self {
        EpochRootKey {
            epoch,
            key: SymmetricKey::generate(),
        }
    }

    /// Wraps known key bytes.
    pub fn from_bytes(epoch: u64, bytes: [u8; 32]) -> Self {
        EpochRootKey {
            epoch,
            key: SymmetricKey::from_bytes(bytes),
        }
    }

    /// The raw root key.
    pub fn key(&self) -> &SymmetricKey {
        &self.key
    }

    /// The key for broadcast (`*`) and `@group` messages:
    /// `HKDF(ikm=root, salt=mesh_id, info="claudemesh/mesh-key/v1")`.
    pub fn mesh_key(&self, mesh_id: &MeshId) -> SymmetricKey {
        self.key
            .hkdf(mesh_id.as_bytes(), label::MESH_KEY.as_bytes())
    }

    /// The key of a public topic:
    /// `HKDF(ikm=root, salt=mesh_id, info="claudemesh/topic-key/v1" ‖ topic_id)`.
    pub fn topic_key(&self, mesh_id: &MeshId, topic_id: &[u8]) -> SymmetricKey {
        let mut info = Vec::with_capacity(label::TOPIC_KEY.len() + topic_id.len());
        info.extend_from_slice(label::TOPIC_KEY.as_bytes());
        info.extend_from_slice(topic_id);
        self.key.hkdf(mesh_id.as_bytes(), &info)
    }

    /// The key for profiles (display names, summaries, peer types):
    /// `HKDF(ikm=root, salt=mesh_id, info="claudemesh/profile-key/v1")`.
    pub fn profile_key(&self, mesh_id: &MeshId) -> SymmetricKey {
        self.key
            .hkdf(mesh_id.as_bytes(), label::PROFILE_KEY.as_bytes())
    }
}

impl fmt::Debug for EpochRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EpochRootKey(epoch={}, <redacted>)", self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Hash32;
    use crate::keys::SigningKey;
    use proptest::prelude::*;

    #[test]
    fn box_roundtrip_and_tamper() {
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        let n = Nonce::random();
        let ct = box_encrypt(
            b"hi bob",
            &n,
            &b.public().to_box_public(),
            &a.to_box_secret(),
        )
        .unwrap();
        let pt = box_decrypt(&ct, &n, &a.public().to_box_public(), &b.to_box_secret()).unwrap();
        assert_eq!(&pt[..], b"hi bob");
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert_eq!(
                box_decrypt(&bad, &n, &a.public().to_box_public(), &b.to_box_secret()),
                Err(BoxError::Authentication)
            );
        }
        assert_eq!(
            box_decrypt(
                &ct[..10],
                &n,
                &a.public().to_box_public(),
                &b.to_box_secret()
            ),
            Err(BoxError::TooShort)
        );
    }

    #[test]
    fn shared_key_matches_box() {
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        let n = Nonce::random();
        let direct =
            box_encrypt(b"x", &n, &b.public().to_box_public(), &a.to_box_secret()).unwrap();
        let shared = SharedBoxKey::new(&b.public().to_box_public(), &a.to_box_secret()).unwrap();
        assert_eq!(shared.encrypt(b"x", &n), direct);
        let other_side =
            SharedBoxKey::new(&a.public().to_box_public(), &b.to_box_secret()).unwrap();
        assert_eq!(&other_side.decrypt(&direct, &n).unwrap()[..], b"x");
    }

    #[test]
    fn sealed_roundtrip_only_for_recipient() {
        let b = SigningKey::generate();
        let c = SigningKey::generate();
        let ct = seal(b"root key", &b.public().to_box_public()).unwrap();
        assert_eq!(
            &open_sealed(&ct, &b.to_box_secret()).unwrap()[..],
            b"root key"
        );
        assert_eq!(
            open_sealed(&ct, &c.to_box_secret()),
            Err(BoxError::Authentication)
        );
    }

    #[test]
    fn derived_keys_are_distinct_and_deterministic() {
        let root = EpochRootKey::from_bytes(3, [5; 32]);
        let mesh = MeshId(Hash32([1; 32]));
        let k1 = root.mesh_key(&mesh);
        assert_eq!(k1, root.mesh_key(&mesh));
        assert_ne!(k1, root.profile_key(&mesh));
        assert_ne!(root.topic_key(&mesh, b"a"), root.topic_key(&mesh, b"b"));
        assert_ne!(k1, root.mesh_key(&MeshId(Hash32([2; 32]))));
    }

    proptest! {
        #[test]
        fn secretbox_roundtrip(key in any::<[u8; 32]>(), pt in proptest::collection::vec(any::<u8>(), 0..512)) {
            let k = SymmetricKey::from_bytes(key);
            let n = Nonce::random();
            let ct = k.encrypt(&pt, &n);
            prop_assert_eq!(ct.len(), pt.len() + MAC_BYTES);
            prop_assert_eq!(&k.decrypt(&ct, &n).unwrap()[..], &pt[..]);
        }
    }
}
