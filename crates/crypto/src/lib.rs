//! claudemesh-crypto: every cryptographic object claudemesh uses, as pure,
//! synchronous functions with no I/O and no `unsafe`.
//!
//! # Layout
//!
//! - [`encoding`]: the canonical, length-prefixed encoding of everything that
//!   is signed or hashed, the domain-separation labels, hex and base64 serde.
//! - [`keys`]: ed25519 identities and their libsodium-compatible X25519 form.
//! - [`ids`]: [`ids::MeshId`], [`ids::MemberKey`], [`ids::SessionKey`], names
//!   for what a bare hash or key stands for (not yet adopted by signatures).
//! - [`boxes`]: `crypto_box`, `crypto_box_seal`, `crypto_secretbox`, the HKDF
//!   key schedule and epoch root keys.
//! - [`cert`]: session certificates, a member key vouching for a session key.
//! - [`log`]: the membership log, its verifier ([`log::Roster`]), key epochs,
//!   topics and groups.
//! - [`envelope`]: message envelopes, sealed and signed by a sender, verified
//!   and opened by a recipient ([`envelope::VerifiedMessage`]).
//! - [`target`]: who a message is for, and the names of groups and topics
//!   (used by both `log` and `envelope`).
//! - [`receipt`]: receipts and watermarks a recipient signs (delivered,
//!   shown, answered), the sender's evidence of delivery.
//! - [`grants`]: what each member lets other members do to it (TM7).
//! - [`invite`]: invite secrets, their URL and short-code forms, proofs of
//!   possession and welcome bundles (TM6).
//! - [`safety`]: safety numbers to compare out of band (TM8).
//! - [`backup`]: the passphrase-encrypted `.cmb` backup file (TM9).
//!
//! The byte-level specification is `docs/security.md`; test vectors made by
//! libsodium itself live in `tests/vectors/`.

pub mod backup;
pub mod boxes;
pub mod cert;
pub mod coord;
pub mod encoding;
pub mod envelope;
pub mod grants;
pub mod ids;
pub mod invite;
pub mod keys;
pub mod log;
pub mod receipt;
pub mod safety;
pub mod target;

pub use boxes::{BoxError, EpochRootKey, Nonce, SharedBoxKey, SymmetricKey};
pub use cert::{CertError, SessionCert, SessionIdentity};
pub use encoding::{DecodeError, Hash32, Transcript};
pub use ids::{MemberKey, MeshId, SessionKey};
pub use keys::{BoxPublicKey, BoxSecretKey, KeyError, PublicKey, Signature, SigningKey};
