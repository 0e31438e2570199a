//! Why an envelope was refused: one variant per reason a caller can act on.

use crate::boxes::BoxError;
use crate::cert::CertError;

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// An envelope version this build does not read.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The body is larger than [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
    #[error("message body is {0} bytes; the limit is 65536")]
    BodyTooLarge(usize),
    /// The sender's session signature does not verify.
    #[error("envelope signature does not verify")]
    BadSignature,
    /// The sender's session certificate is invalid.
    #[error("sender certificate: {0}")]
    BadCertificate(#[from] CertError),
    /// The envelope is for another mesh.
    #[error("envelope is for another mesh")]
    WrongMesh,
    /// The certifying member key is not (or was not, at the claimed log head) a member.
    #[error("sender {0} is not a member of this mesh")]
    SenderNotMember(String),
    /// A direct message addressed to someone else.
    #[error("direct message is addressed to someone else")]
    NotForMe,
    /// No key for this target and epoch (not a member of the topic, or an epoch never received).
    #[error("no key to open messages for {target} at epoch {epoch}")]
    NoKey {
        /// The target.
        target: String,
        /// The epoch.
        epoch: u64,
    },
    /// The ciphertext does not authenticate under the key.
    #[error("message does not decrypt: {0}")]
    Decrypt(BoxError),
    /// The sealing key does not fit the target (a box for a group, a group key for a DM).
    #[error("sealing key does not match the target kind")]
    KeyKindMismatch,
}
