//! What a recipient does with an envelope: [`Envelope::verify_and_open`]
//! checks the session signature, the session certificate, the sender's
//! membership in the verified roster, then opens the body with its
//! [`OpeningKeys`]. A [`VerifiedMessage`] can only be made that way (TM4).

use std::fmt;

use zeroize::Zeroizing;

use crate::boxes::{SharedBoxKey, SymmetricKey, box_decrypt};
use crate::cert::SessionCert;
use crate::ids::{MemberKey, MeshId, SessionKey};
use crate::keys::{PublicKey, SigningKey};
use crate::log::Roster;
use crate::target::Target;

use super::error::EnvelopeError;
use super::header::{MessageId, Priority};
use super::sealed::Envelope;

/// The keys a recipient opens envelopes with.
pub trait OpeningKeys {
    /// My member key (opens direct messages to my member).
    fn member_key(&self) -> &SigningKey;
    /// My session key, if I act as a session (opens messages to my session).
    fn session_key(&self) -> Option<&SigningKey>;
    /// The symmetric key for a group, topic or broadcast target at `epoch`.
    fn symmetric_key(&self, target: &Target, epoch: u64) -> Option<SymmetricKey>;
    /// A cached shared box key for (sender session, my recipient key), if any.
    fn shared_box_key(
        &self,
        _sender_session: &PublicKey,
        _mine: &PublicKey,
    ) -> Option<SharedBoxKey> {
        None
    }
    /// Whether this exact certificate (every field equal) had its signature
    /// verified before: a session signs many messages with one certificate,
    /// and checking the member's signature again each time costs ~30 µs.
    fn cert_signature_known(&self, _cert: &SessionCert) -> bool {
        false
    }
    /// Remembers a certificate whose signature just verified.
    fn remember_cert_signature(&self, _cert: &SessionCert) {}
}

impl Envelope {
    /// Verifies everything a recipient must check, then opens the body.
    pub fn verify_and_open(
        &self,
        roster: &Roster,
        keys: &impl OpeningKeys,
    ) -> Result<VerifiedMessage, EnvelopeError> {
        self.verify_signature()?;
        if self.mesh != roster.mesh_id() {
            return Err(EnvelopeError::WrongMesh);
        }
        if keys.cert_signature_known(&self.sender) {
            self.sender
                .verify_previously_signed(&self.mesh, self.sent_at / 1000)?;
        } else {
            self.sender.verify(&self.mesh, self.sent_at / 1000)?;
            keys.remember_cert_signature(&self.sender);
        }
        let member = self.sender.member;
        if !roster.was_member_at(&member, &self.log_head) {
            return Err(EnvelopeError::SenderNotMember(
                member.to_hex()[..8].to_owned(),
            ));
        }
        let body = match &self.target {
            Target::Member(to) => self.open_direct(keys, Some(keys.member_key()), to)?,
            Target::Session(to) => self.open_direct(keys, keys.session_key(), to)?,
            target => keys
                .symmetric_key(target, self.epoch)
                .ok_or_else(|| EnvelopeError::NoKey {
                    target: target.to_string(),
                    epoch: self.epoch,
                })?
                .decrypt(&self.ciphertext, &self.nonce)
                .map_err(EnvelopeError::Decrypt)?,
        };
        Ok(VerifiedMessage {
            mesh: self.mesh,
            epoch: self.epoch,
            sender_member: member,
            sender_session: self.sender.session,
            target: self.target.clone(),
            id: self.id,
            reply_to: self.reply_to,
            priority: self.priority,
            sent_at: self.sent_at,
            body,
        })
    }

    /// The body of a direct message to `to`, opened with `mine` if it is
    /// that key.
    fn open_direct(
        &self,
        keys: &impl OpeningKeys,
        mine: Option<&SigningKey>,
        to: &PublicKey,
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let mine = mine
            .filter(|k| k.public() == *to)
            .ok_or(EnvelopeError::NotForMe)?;
        match keys.shared_box_key(&self.sender.session, to) {
            Some(shared) => shared.decrypt(&self.ciphertext, &self.nonce),
            None => box_decrypt(
                &self.ciphertext,
                &self.nonce,
                &self.sender.session.to_box_public(),
                &mine.to_box_secret(),
            ),
        }
        .map_err(EnvelopeError::Decrypt)
    }
}

/// A message whose signature, sender certificate and membership were
/// verified and whose body was opened. Only [`Envelope::verify_and_open`]
/// makes one.
#[derive(Clone)]
pub struct VerifiedMessage {
    mesh: MeshId,
    epoch: u64,
    sender_member: MemberKey,
    sender_session: SessionKey,
    target: Target,
    id: MessageId,
    reply_to: Option<MessageId>,
    priority: Priority,
    sent_at: u64,
    body: Zeroizing<Vec<u8>>,
}

impl VerifiedMessage {
    /// The mesh.
    pub fn mesh(&self) -> MeshId {
        self.mesh
    }
    /// The key epoch the body was sealed under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// The sender's member key (verified member).
    pub fn sender_member(&self) -> MemberKey {
        self.sender_member
    }
    /// The sender's session key (certified by the member key).
    pub fn sender_session(&self) -> SessionKey {
        self.sender_session
    }
    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// The sender's message id; (sender member, id) is the dedupe key.
    pub fn id(&self) -> MessageId {
        self.id
    }
    /// The message this one answers.
    pub fn reply_to(&self) -> Option<MessageId> {
        self.reply_to
    }
    /// Priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }
    /// Sender's clock, unix milliseconds.
    pub fn sent_at(&self) -> u64 {
        self.sent_at
    }
    /// The plaintext body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for VerifiedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the body: logs must not carry plaintext.
        f.debug_struct("VerifiedMessage")
            .field("sender_member", &self.sender_member)
            .field("target", &self.target)
            .field("id", &self.id)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}
