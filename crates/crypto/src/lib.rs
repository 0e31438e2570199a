//! claudemesh-crypto: every cryptographic object claudemesh uses, as pure,
//! synchronous functions with no I/O and no `unsafe`.
//!
//! - [`encoding`]: the canonical, length-prefixed encoding of everything that
//!   is signed or hashed, and the domain-separation labels.
//! - [`keys`]: ed25519 identities and their libsodium-compatible X25519 form.
//! - [`boxes`]: `crypto_box`, `crypto_box_seal`, `crypto_secretbox`, HKDF key
//!   schedule.
//!
//! The byte-level specification is `docs/security.md`; test vectors made by
//! libsodium itself live in `tests/vectors/`.

pub mod backup;
pub mod boxes;
pub mod cert;
pub mod encoding;
pub mod envelope;
pub mod grants;
pub mod invite;
pub mod keys;
pub mod log;
pub mod safety;

pub use boxes::{BoxError, EpochRootKey, Nonce, SharedBoxKey, SymmetricKey};
pub use cert::{CertError, SessionCert, SessionIdentity};
pub use encoding::{DecodeError, Hash32, Transcript};
pub use keys::{BoxPublicKey, BoxSecretKey, KeyError, PublicKey, Signature, SigningKey};
