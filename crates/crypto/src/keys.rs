//! Identity keys: ed25519 signing keys (member, session, invite), their
//! public halves and signatures, and the libsodium-compatible conversion to
//! X25519 box keys (`crypto_sign_ed25519_{pk,sk}_to_curve25519`).
//!
//! Secrets zeroize on drop, never print through `Debug`, and are compared in
//! constant time. Public keys are validated when parsed: a key that is not a
//! canonical point of prime order, or that has small order, is refused, so
//! every `PublicKey` value can also be converted to an X25519 key.

use std::collections::HashMap;
use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey as DalekSigningKey, VerifyingKey};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::encoding::{DecodeError, decode_hex_array, hex_serde};

/// Fills an array from the operating system's CSPRNG.
///
/// # Panics
/// If the OS random source fails. Nothing in claudemesh can be made safe
/// without randomness, so this is treated like an allocation failure.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)] // OS RNG failure is unrecoverable; see doc.
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not a valid, prime-order, non-weak ed25519 public key.
    #[error("not a valid ed25519 public key")]
    InvalidPublicKey,
    /// A 64-byte `seed‖pk` secret whose public half does not match its seed.
    #[error("secret key does not match its public key")]
    MismatchedKeypair,
    /// A signature did not verify (strict verification).
    #[error("signature does not verify")]
    BadSignature,
    /// A textual encoding could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// An ed25519 public key (member, session or invite identity).
///
/// Always a canonical, prime-order, non-weak point. Serialized as 64
/// lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

/// Public keys that passed validation, by their bytes. The same few keys
/// arrive over and over (every envelope names its sender's member and
/// session keys and its recipient), and validating one costs a point
/// decompression plus a full scalar multiplication for the prime-order
/// check (~40 µs); a lookup costs well under one. Bounded: cleared when full.
static VALIDATED: std::sync::OnceLock<std::sync::RwLock<HashMap<[u8; 32], VerifyingKey>>> =
    std::sync::OnceLock::new();
/// Most keys kept in [`VALIDATED`] (about 200 bytes each).
const VALIDATED_CAPACITY: usize = 16 * 1024;

fn validated() -> &'static std::sync::RwLock<HashMap<[u8; 32], VerifyingKey>> {
    VALIDATED.get_or_init(|| std::sync::RwLock::new(HashMap::new()))
}

impl PublicKey {
    /// Parses and validates 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        if let Ok(cache) = validated().read()
            && let Some(vk) = cache.get(bytes)
        {
            return Ok(PublicKey(*vk));
        }
        let key = Self::validate(bytes)?;
        if let Ok(mut cache) = validated().write() {
            if cache.len() >= VALIDATED_CAPACITY {
                cache.clear();
            }
            cache.insert(*bytes, key.0);
        }
        Ok(key)
    }

    /// The full check, uncached.
    fn validate(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let vk = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPublicKey)?;
        if vk.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        // libsodium (and dryoc) also require the point to be in the prime-order
        // subgroup before converting to X25519; requiring it here keeps every
        // PublicKey convertible.
        let mut x = [0u8; 32];
        dryoc::classic::crypto_sign_ed25519::crypto_sign_ed25519_pk_to_curve25519(&mut x, bytes)
            .map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(PublicKey(vk))
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&decode_hex_array::<32>(s)?)
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The raw bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Verifies a detached signature with `verify_strict` (rejects malleable
    /// signatures and weak keys).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The X25519 public key for `crypto_box`, exactly as libsodium's
    /// `crypto_sign_ed25519_pk_to_curve25519` computes it.
    pub fn to_box_public(&self) -> BoxPublicKey {
        // Cannot fail: from_bytes already ran the same conversion.
        BoxPublicKey(self.0.to_montgomery().to_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

hex_serde!(
    PublicKey,
    32,
    |k: &PublicKey| k.to_bytes(),
    |b: [u8; 32]| { PublicKey::from_bytes(&b) }
);

/// A detached ed25519 signature (64 bytes, 128 hex characters on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// The raw bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

hex_serde!(Signature, 64, |s: &Signature| s.0, |b: [u8; 64]| {
    Ok::<_, DecodeError>(Signature(b))
});

/// An ed25519 signing key. Zeroized on drop (ed25519-dalek's `zeroize`
/// feature); `Debug` shows only the public key.
#[derive(Clone)]
pub struct SigningKey(DalekSigningKey);

impl SigningKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Self {
        let seed = Zeroizing::new(random_bytes::<32>());
        Self::from_seed(&seed)
    }

    /// The key for a 32-byte seed (libsodium `crypto_sign_seed_keypair`).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey(DalekSigningKey::from_bytes(seed))
    }

    /// Loads libsodium's 64-byte secret form `seed‖pk`, refusing a pair whose
    /// public half does not match the seed.
    pub fn from_keypair_bytes(bytes: &[u8; 64]) -> Result<Self, KeyError> {
        DalekSigningKey::from_keypair_bytes(bytes)
            .map(SigningKey)
            .map_err(|_| KeyError::MismatchedKeypair)
    }

    /// Parses the 128-hex-character form of [`SigningKey::to_keypair_bytes`].
    pub fn from_keypair_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(decode_hex_array::<64>(s)?);
        Self::from_keypair_bytes(&bytes)
    }

    /// libsodium's 64-byte secret form `seed‖pk`.
    pub fn to_keypair_bytes(&self) -> Zeroizing<[u8; 64]> {
        Zeroizing::new(self.0.to_keypair_bytes())
    }

    /// 128 lowercase hex characters of `seed‖pk` (how key files store it).
    pub fn to_keypair_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.to_keypair_bytes()))
    }

    /// The 32-byte seed.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        // A key derived from a seed is always a valid prime-order point.
        PublicKey(self.0.verifying_key())
    }

    /// A detached signature (deterministic, RFC 8032; equal to libsodium's).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    /// The X25519 secret for `crypto_box`, clamped exactly as libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519` produces it.
    pub fn to_box_secret(&self) -> BoxSecretKey {
        let keypair = self.to_keypair_bytes();
        let mut x = Zeroizing::new([0u8; 32]);
        dryoc::classic::crypto_sign_ed25519::crypto_sign_ed25519_sk_to_curve25519(&mut x, &keypair);
        BoxSecretKey(x)
    }
}

impl PartialEq for SigningKey {
    /// Constant-time comparison of the seeds.
    fn eq(&self, other: &Self) -> bool {
        self.seed().ct_eq(&*other.seed()).into()
    }
}

impl Eq for SigningKey {}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public={}, secret=<redacted>)", self.public())
    }
}

/// An X25519 public key for `crypto_box` / `crypto_box_seal`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BoxPublicKey(pub [u8; 32]);

impl BoxPublicKey {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for BoxPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoxPublicKey({})", hex::encode(self.0))
    }
}

/// An X25519 secret key for `crypto_box` (clamped, libsodium form).
/// Zeroized on drop; never printed.
#[derive(Clone)]
pub struct BoxSecretKey(Zeroizing<[u8; 32]>);

impl BoxSecretKey {
    /// Wraps 32 secret bytes (already clamped or not: X25519 clamps anyway).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BoxSecretKey(Zeroizing::new(bytes))
    }

    /// The raw secret bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The matching public key (`crypto_scalarmult_base`).
    pub fn public(&self) -> BoxPublicKey {
        let secret = x25519_dalek::StaticSecret::from(*self.0);
        BoxPublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

impl PartialEq for BoxSecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for BoxSecretKey {}

impl fmt::Debug for BoxSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxSecretKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keypair_bytes_roundtrip_and_mismatch_is_refused() {
        let k = SigningKey::from_seed(&[7; 32]);
        let bytes = k.to_keypair_bytes();
        assert_eq!(SigningKey::from_keypair_bytes(&bytes).unwrap(), k);
        let mut wrong = *bytes;
        wrong[40] ^= 1;
        assert_eq!(
            SigningKey::from_keypair_bytes(&wrong),
            Err(KeyError::MismatchedKeypair)
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = SigningKey::from_seed(&[9; 32]);
        let shown = format!("{k:?} {:?}", k.to_box_secret());
        assert!(!shown.contains(&hex::encode([9u8; 32])));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn box_secret_matches_box_public() {
        let k = SigningKey::generate();
        assert_eq!(k.to_box_secret().public(), k.public().to_box_public());
    }

    #[test]
    fn cached_validation_gives_the_same_answers() {
        let pk = SigningKey::generate().public();
        assert_eq!(PublicKey::from_bytes(pk.as_bytes()).unwrap(), pk);
        assert_eq!(PublicKey::from_bytes(pk.as_bytes()).unwrap(), pk);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for _ in 0..2 {
            assert_eq!(
                PublicKey::from_bytes(&identity),
                Err(KeyError::InvalidPublicKey)
            );
        }
    }

    #[test]
    fn weak_and_invalid_public_keys_are_refused() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes(&identity),
            Err(KeyError::InvalidPublicKey)
        );
        assert!(PublicKey::from_hex("zz").is_err());
    }

    #[test]
    fn tampered_signature_fails() {
        let k = SigningKey::generate();
        let mut sig = k.sign(b"hello");
        k.public().verify(b"hello", &sig).unwrap();
        sig.0[3] ^= 0x10;
        assert_eq!(
            k.public().verify(b"hello", &sig),
            Err(KeyError::BadSignature)
        );
        assert!(k.public().verify(b"hellp", &k.sign(b"hello")).is_err());
    }

    proptest! {
        #[test]
        fn public_key_serde_roundtrip(seed in any::<[u8; 32]>()) {
            let pk = SigningKey::from_seed(&seed).public();
            let json = serde_json::to_string(&pk).unwrap();
            prop_assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), pk);
            prop_assert_eq!(PublicKey::from_hex(&pk.to_hex()).unwrap(), pk);
        }

        #[test]
        fn signature_serde_roundtrip(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..64)) {
            let k = SigningKey::from_seed(&seed);
            let sig = k.sign(&msg);
            let back: Signature = serde_json::from_str(&serde_json::to_string(&sig).unwrap()).unwrap();
            prop_assert_eq!(back, sig);
            prop_assert!(k.public().verify(&msg, &back).is_ok());
        }
    }
}
