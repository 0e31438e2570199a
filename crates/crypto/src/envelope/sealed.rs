//! The [`Envelope`] as it travels and is stored, and what a sender does to
//! make one: seal the body under a [`SealingKey`], sign every field with its
//! session key. Checking that signature alone (for relays) is here too.

use serde::{Deserialize, Serialize};

use crate::boxes::{Nonce, SharedBoxKey, SymmetricKey, box_encrypt};
use crate::cert::{SessionCert, SessionIdentity};
use crate::encoding::{Hash32, Transcript, base64_bytes, label};
use crate::ids::MeshId;
use crate::keys::{PublicKey, Signature};
use crate::target::Target;

use super::error::EnvelopeError;
use super::header::{EnvelopeHeader, MessageId, Priority};

/// The envelope format version this crate writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// Largest plaintext body a message may carry (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A sealed, signed message as it travels and is stored. The broker sees all
/// of these fields; only `ciphertext` is secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope format version (1).
    pub v: u8,
    /// The mesh id (hash of the genesis log entry).
    pub mesh: MeshId,
    /// Key generation: the mesh epoch whose keys sealed the body.
    pub epoch: u64,
    /// Who the message is for.
    pub target: Target,
    /// Client-chosen id; (sender member, id) is unique.
    pub id: MessageId,
    /// The message this one answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// Delivery priority.
    pub priority: Priority,
    /// Sender's clock, unix milliseconds.
    pub sent_at: u64,
    /// The membership-log head the sender had verified when sending.
    pub log_head: Hash32,
    /// The sender's session certificate (chains to its member key).
    pub sender: SessionCert,
    /// The box nonce.
    pub nonce: Nonce,
    /// `crypto_box` (direct) or `crypto_secretbox` (group, topic, broadcast) output.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// ed25519 signature by `sender.session` over the canonical envelope.
    pub sig: Signature,
}

/// The key a sender seals a body with.
#[derive(Debug, Clone, Copy)]
pub enum SealingKey<'a> {
    /// `crypto_box` to this recipient key (the target's member or session key).
    Direct(&'a PublicKey),
    /// `crypto_box` with a precomputed shared key for (recipient, my session).
    DirectShared(&'a SharedBoxKey),
    /// `crypto_secretbox` under a mesh, topic or private-topic key.
    Symmetric(&'a SymmetricKey),
}

impl Envelope {
    /// Seals `body` under `key` and signs the envelope with the sender's session key.
    pub fn seal(
        sender: &SessionIdentity,
        header: EnvelopeHeader,
        body: &[u8],
        key: SealingKey<'_>,
    ) -> Result<Envelope, EnvelopeError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(EnvelopeError::BodyTooLarge(body.len()));
        }
        let nonce = Nonce::random();
        let ciphertext = match (key, header.target.is_direct()) {
            (SealingKey::Direct(recipient), true) => box_encrypt(
                body,
                &nonce,
                &recipient.to_box_public(),
                &sender.key.to_box_secret(),
            )
            .map_err(EnvelopeError::Decrypt)?,
            (SealingKey::DirectShared(shared), true) => shared.encrypt(body, &nonce),
            (SealingKey::Symmetric(k), false) => k.encrypt(body, &nonce),
            _ => return Err(EnvelopeError::KeyKindMismatch),
        };
        let mut env = Envelope {
            v: ENVELOPE_VERSION,
            mesh: header.mesh,
            epoch: header.epoch,
            target: header.target,
            id: header.id,
            reply_to: header.reply_to,
            priority: header.priority,
            sent_at: header.sent_at,
            log_head: header.log_head,
            sender: sender.cert.clone(),
            nonce,
            ciphertext,
            sig: Signature([0; 64]),
        };
        env.sig = sender.key.sign(&env.signed_bytes());
        Ok(env)
    }

    /// The canonical bytes the sender's session key signs (every field but `sig`).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(label::ENVELOPE);
        t.u64(u64::from(self.v))
            .bytes(self.mesh.as_bytes())
            .u64(self.epoch)
            .str(&self.target.to_string())
            .bytes(&self.id.0)
            .opt_bytes(self.reply_to.as_ref().map(|r| &r.0[..]))
            .str(self.priority.as_str())
            .u64(self.sent_at)
            .bytes(self.log_head.as_bytes())
            .bytes(&self.sender.signed_bytes())
            .bytes(&self.sender.sig.0)
            .bytes(&self.nonce.0)
            .bytes(&self.ciphertext);
        t.into_bytes()
    }

    /// Checks only the version and the session signature: cheap, for relays
    /// that must not open the body.
    pub fn verify_signature(&self) -> Result<(), EnvelopeError> {
        if self.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(self.v));
        }
        self.sender
            .session
            .verify(&self.signed_bytes(), &self.sig)
            .map_err(|_| EnvelopeError::BadSignature)
    }
}
