//! The one canonical byte encoding for everything claudemesh signs or hashes,
//! the domain-separation labels, and the serde helpers (hex, base64) that put
//! binary values into JSON.
//!
//! Canonical form (see `docs/security.md` §2): a transcript is the label
//! followed by fields, each written as a 4-byte big-endian length and then the
//! bytes. Integers are fields of their 8-byte big-endian form. An optional
//! value is a one-byte field `00` (absent) or `01` followed by the value's
//! field. A list is an integer field (its length) followed by its items.
//! Because every field carries its length, no two different field sequences
//! encode to the same bytes, and a signature made for one purpose (label) can
//! never be read as a signature for another.

use sha2::{Digest, Sha256};

/// Implements `Serialize`/`Deserialize` as lowercase hex for a fixed-size
/// byte type, given how to get its bytes and how to build it from them.
macro_rules! hex_serde {
    ($ty:ty, $n:expr, $to:expr, $from:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let bytes: [u8; $n] = ($to)(self);
                s.serialize_str(&hex::encode(bytes))
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                let bytes = $crate::encoding::decode_hex_array::<$n>(&s)
                    .map_err(serde::de::Error::custom)?;
                ($from)(bytes).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use hex_serde;

/// Domain-separation labels: every signed or hashed byte string begins with
/// exactly one of these. The list is closed; `docs/security.md` mirrors it.
pub mod label {
    /// A session certificate, signed by the member key.
    pub const SESSION_CERT: &str = "claudemesh/session-cert/v1";
    /// The hello a client signs with its session key (bound to the challenge).
    pub const HELLO: &str = "claudemesh/hello/v1";
    /// A membership-log entry, signed by its author (and, for `admit`, by the invite key).
    pub const LOG_ENTRY: &str = "claudemesh/log-entry/v1";
    /// The hash of a signed membership-log entry (chain link, mesh id).
    pub const LOG_HASH: &str = "claudemesh/log-hash/v1";
    /// A message envelope, signed by the sender's session key.
    pub const ENVELOPE: &str = "claudemesh/envelope/v1";
    /// HKDF info: the mesh-wide key of an epoch (broadcast and `@group`).
    pub const MESH_KEY: &str = "claudemesh/mesh-key/v1";
    /// HKDF info: a public topic's key of an epoch.
    pub const TOPIC_KEY: &str = "claudemesh/topic-key/v1";
    /// HKDF info: the key that encrypts profiles and presence summaries.
    pub const PROFILE_KEY: &str = "claudemesh/profile-key/v1";
    /// HKDF info: the invite signing seed, from the invite secret.
    pub const INVITE_SIGN: &str = "claudemesh/invite-sign/v1";
    /// HKDF info: the invite bundle key, from the invite secret.
    pub const INVITE_BUNDLE: &str = "claudemesh/invite-bundle/v1";
    /// Argon2id salt source for the short invite code.
    pub const INVITE_CODE: &str = "claudemesh/invite-code/v1";
    /// Proof of holding an invite secret: the invite key signs the challenge.
    pub const INVITE_PROOF: &str = "claudemesh/invite-proof/v1";
    /// AAD of the invite welcome bundle.
    pub const WELCOME_BUNDLE: &str = "claudemesh/welcome-bundle/v1";
    /// The per-key fingerprint behind a safety number.
    pub const SAFETY_NUMBER: &str = "claudemesh/safety-number/v1";
    /// A grant set signed by the recipient who grants it.
    pub const GRANTS: &str = "claudemesh/grants/v1";
    /// HKDF info prefix: the public confirmation of a new mesh epoch root or
    /// private topic key, carried in the entry that seals it.
    pub const KEY_CONFIRM: &str = "claudemesh/key-confirm/v1";
    /// A recipient's signed receipt for one message (delivered, shown, answered).
    pub const RECEIPT: &str = "claudemesh/receipt/v1";
    /// A recipient's signed watermark: every message of one group, topic or
    /// broadcast up to a broker sequence number was delivered or shown.
    pub const WATERMARK: &str = "claudemesh/watermark/v1";
    /// HKDF info prefix: an epoch's coordination key (sealed team memory).
    pub const COORD_KEY: &str = "claudemesh/coord-key/v1";
    /// A coordination object, signed by its author's session.
    pub const COORD_OBJECT: &str = "claudemesh/coord-object/v1";
    /// A coordination key ring link, signed by its writer's session.
    pub const COORD_RING: &str = "claudemesh/coord-ring/v1";
    /// HKDF info: the keyed hash a shared state key is filed under.
    pub const STATE_KEY: &str = "claudemesh/state-key/v1";
    /// HKDF info: a file lease's keyed path tag.
    pub const LEASE_PATH: &str = "claudemesh/lease-path/v1";
}

/// Builder for a canonical transcript (label + length-prefixed fields).
///
/// ```
/// use claudemesh_crypto::encoding::{label, Transcript};
/// let mut t = Transcript::new(label::HELLO);
/// t.bytes(b"challenge").u64(7).opt_bytes(None);
/// assert_eq!(&t.as_bytes()[..4], &(label::HELLO.len() as u32).to_be_bytes());
/// ```
#[derive(Debug, Clone)]
pub struct Transcript {
    buf: Vec<u8>,
}

impl Transcript {
    /// Starts a transcript with its domain-separation label.
    pub fn new(label: &str) -> Self {
        let mut t = Transcript {
            buf: Vec::with_capacity(128),
        };
        t.bytes(label.as_bytes());
        t
    }

    /// Appends one field: 4-byte big-endian length, then the bytes.
    ///
    /// # Panics
    /// Never for claudemesh inputs: fields are bounded far below 4 GiB by the
    /// protocol's frame limit; a larger field would be a programming error.
    pub fn bytes(&mut self, field: &[u8]) -> &mut Self {
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(field);
        self
    }

    /// Appends a UTF-8 string as a field.
    pub fn str(&mut self, field: &str) -> &mut Self {
        self.bytes(field.as_bytes())
    }

    /// Appends an unsigned integer as the field of its 8-byte big-endian form.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes(&value.to_be_bytes())
    }

    /// Appends an optional field: `[00]` when absent, `[01]` then the value.
    pub fn opt_bytes(&mut self, field: Option<&[u8]>) -> &mut Self {
        match field {
            None => self.bytes(&[0]),
            Some(v) => self.bytes(&[1]).bytes(v),
        }
    }

    /// Appends an optional string (see [`Transcript::opt_bytes`]).
    pub fn opt_str(&mut self, field: Option<&str>) -> &mut Self {
        self.opt_bytes(field.map(str::as_bytes))
    }

    /// Appends the length of a list; the caller then appends its items.
    pub fn list_len(&mut self, len: usize) -> &mut Self {
        self.u64(len as u64)
    }

    /// The encoded bytes so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Consumes the builder, returning the encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// SHA-256 of the encoded bytes.
    pub fn sha256(&self) -> Hash32 {
        Hash32(Sha256::digest(&self.buf).into())
    }
}

/// A 32-byte SHA-256 digest (log entry hashes, mesh ids, log heads).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero hash: the `prev` of a genesis entry.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        decode_hex_array(s).map(Hash32)
    }
}

impl std::fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl std::fmt::Display for Hash32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

hex_serde!(Hash32, 32, |h: &Hash32| h.0, |b: [u8; 32]| Ok::<
    _,
    DecodeError,
>(Hash32(b)));

/// Why a textual (hex, base64) value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid hex.
    #[error("not valid hex")]
    Hex,
    /// Not valid base64.
    #[error("not valid base64")]
    Base64,
    /// Decoded to the wrong number of bytes.
    #[error("expected {expected} bytes, got {got}")]
    Length {
        /// The length the field must have.
        expected: usize,
        /// The length found.
        got: usize,
    },
    /// The bytes do not form a valid key or value of the expected kind.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Decodes hex (either case) into exactly `N` bytes.
pub fn decode_hex_array<const N: usize>(s: &str) -> Result<[u8; N], DecodeError> {
    if s.len() != 2 * N {
        return Err(DecodeError::Length {
            expected: N,
            got: s.len() / 2,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| DecodeError::Hex)?;
    Ok(out)
}

/// Standard base64 with padding (libsodium's `ORIGINAL` variant).
pub fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64 with padding.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| DecodeError::Base64)
}

/// URL-safe base64 without padding (invite tokens).
pub fn b64url_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes URL-safe base64 without padding.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| DecodeError::Base64)
}

/// Serde adapter: `Vec<u8>` as standard base64. Use with
/// `#[serde(with = "claudemesh_crypto::encoding::base64_bytes")]`.
pub mod base64_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as standard base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::b64_encode(bytes))
    }

    /// Deserializes standard base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::b64_decode(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_are_length_prefixed() {
        let mut t = Transcript::new("L");
        t.bytes(b"ab").u64(1).opt_bytes(None).opt_bytes(Some(b"x"));
        let expected: Vec<u8> = [
            &[0, 0, 0, 1, b'L'][..],
            &[0, 0, 0, 2, b'a', b'b'],
            &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0, 0, 0, 1, 0],
            &[0, 0, 0, 1, 1, 0, 0, 0, 1, b'x'],
        ]
        .concat();
        assert_eq!(t.as_bytes(), expected.as_slice());
    }

    #[test]
    fn different_splits_never_collide() {
        let mut a = Transcript::new("L");
        a.bytes(b"ab").bytes(b"c");
        let mut b = Transcript::new("L");
        b.bytes(b"a").bytes(b"bc");
        assert_ne!(a.as_bytes(), b.as_bytes());
    }

    proptest! {
        #[test]
        fn hash32_hex_roundtrip(bytes in any::<[u8; 32]>()) {
            let h = Hash32(bytes);
            prop_assert_eq!(Hash32::from_hex(&h.to_hex()).unwrap(), h);
            let json = serde_json::to_string(&h).unwrap();
            prop_assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), h);
        }

        #[test]
        fn base64_roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(b64_decode(&b64_encode(&bytes)).unwrap(), bytes.clone());
            prop_assert_eq!(b64url_decode(&b64url_encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn distinct_field_lists_encode_distinctly(
            a in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..5),
            b in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..5),
        ) {
            let enc = |fields: &Vec<Vec<u8>>| {
                let mut t = Transcript::new("L");
                t.list_len(fields.len());
                for f in fields { t.bytes(f); }
                t.into_bytes()
            };
            prop_assert_eq!(a == b, enc(&a) == enc(&b));
        }
    }
}
