//! Sealing a message to a target and the keys that open one: the key a
//! fan-out message is sealed under now, direct `crypto_box` keys, and
//! [`OpeningKeys`] for verifying and opening envelopes.

use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::envelope::{
    Envelope, EnvelopeHeader, MessageId, OpeningKeys, Priority, SealingKey, Target,
};
use claudemesh_crypto::{PublicKey, SharedBoxKey, SigningKey, SymmetricKey};
use claudemesh_proto::ErrorCode;

use crate::error::{ClientError, MissingKey};

use super::state::{MeshState, short};

impl MeshState {
    /// The key and key epoch a fan-out message to `target` is sealed
    /// under now: the mesh key of the current epoch (`*`, `@group`), the
    /// public topic key of the current epoch, or a private topic's own key
    /// of its current key epoch (this member must be in the topic, and the
    /// topic must not be waiting for a `topic_rekey`).
    pub fn sealing_key(&self, target: &Target) -> Result<(u64, SymmetricKey), ClientError> {
        let no_root = || ClientError::MissingKey(MissingKey::CurrentEpoch);
        let epoch = self.roster.epoch();
        match target {
            Target::Broadcast | Target::Group(_) => {
                let root = self.root(epoch).ok_or_else(no_root)?;
                Ok((epoch, root.mesh_key(&self.config.id)))
            }
            Target::Topic(t) => {
                let info = self.roster.topic(t).ok_or_else(|| self.no_such_topic(t))?;
                if !info.private {
                    let root = self.root(epoch).ok_or_else(no_root)?;
                    return Ok((epoch, root.topic_key(&self.config.id, t.as_bytes())));
                }
                if !info.members.contains_key(&self.keys.member.public()) {
                    return Err(ClientError::NotAllowed(format!(
                        "#{t} is a private topic and you are not in it; only its members can post (ask one of them to add you: `claudemesh topic add {t} <your name>`)"
                    )));
                }
                if info.needs_rekey {
                    return Err(ClientError::Refused {
                        code: ErrorCode::RekeyRequired,
                        message: format!(
                            "a member left the private topic #{t}; its key must rotate (topic_rekey) before anyone posts"
                        ),
                    });
                }
                let key = self
                    .private_topic_key(t, info.key_epoch)
                    .cloned()
                    .ok_or_else(|| {
                        ClientError::MissingKey(MissingKey::TopicEpoch {
                            topic: t.clone(),
                            epoch: info.key_epoch,
                        })
                    })?;
                Ok((info.key_epoch, key))
            }
            Target::Member(_) | Target::Session(_) => {
                Err(ClientError::MissingKey(MissingKey::Direct))
            }
        }
    }

    /// Seals and signs a message as this session, under a fresh id.
    pub fn seal(
        &self,
        target: Target,
        body: &[u8],
        priority: Priority,
        reply_to: Option<MessageId>,
        sent_at_ms: u64,
    ) -> Result<Envelope, ClientError> {
        self.seal_as(
            MessageId::random(),
            target,
            body,
            priority,
            reply_to,
            sent_at_ms,
        )
    }

    /// Seals and signs a message with a given id (a message resealed under
    /// a new key keeps its id, so the broker stores it once).
    pub fn seal_as(
        &self,
        id: MessageId,
        target: Target,
        body: &[u8],
        priority: Priority,
        reply_to: Option<MessageId>,
        sent_at_ms: u64,
    ) -> Result<Envelope, ClientError> {
        let symmetric = if target.is_direct() {
            None
        } else {
            Some(self.sealing_key(&target)?)
        };
        let header = EnvelopeHeader {
            mesh: self.config.id,
            epoch: symmetric
                .as_ref()
                .map_or(self.roster.epoch(), |(epoch, _)| *epoch),
            target: target.clone(),
            id,
            reply_to,
            priority,
            sent_at: sent_at_ms,
            log_head: self.roster.head(),
        };
        let direct: Option<(bool, &PublicKey)> = match &target {
            Target::Member(k) => Some((self.roster.is_member(k), k)),
            Target::Session(k) => Some((self.verified_sessions.contains_key(&**k), k)),
            Target::Group(_) | Target::Topic(_) | Target::Broadcast => None,
        };
        match direct {
            Some((known, k)) => {
                if !known {
                    return Err(ClientError::NoSuchPeer(short(k)));
                }
                let shared = self.shared_key(k, &self.session.key)?;
                Ok(Envelope::seal(
                    &self.session,
                    header,
                    body,
                    SealingKey::DirectShared(&shared),
                )?)
            }
            None => {
                let (_, key) = symmetric.ok_or(ClientError::MissingKey(MissingKey::FanOut))?;
                Ok(Envelope::seal(
                    &self.session,
                    header,
                    body,
                    SealingKey::Symmetric(&key),
                )?)
            }
        }
    }

    pub(super) fn shared_key(
        &self,
        peer: &PublicKey,
        mine: &SigningKey,
    ) -> Result<SharedBoxKey, ClientError> {
        let id = (*peer, mine.public());
        if let Ok(cache) = self.shared.lock()
            && let Some(k) = cache.get(&id)
        {
            return Ok(k.clone());
        }
        let k = SharedBoxKey::new(&peer.to_box_public(), &mine.to_box_secret()).map_err(|e| {
            ClientError::Encrypt {
                peer: short(peer),
                reason: e.to_string(),
            }
        })?;
        if let Ok(mut cache) = self.shared.lock() {
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(id, k.clone());
        }
        Ok(k)
    }
}

impl OpeningKeys for MeshState {
    fn member_key(&self) -> &SigningKey {
        &self.keys.member
    }

    fn session_key(&self) -> Option<&SigningKey> {
        Some(&self.session.key)
    }

    /// `*` and `@group`: the mesh key of `epoch`. `#topic`: for a public
    /// topic its key derived from the root of `epoch`; for a private one
    /// its own key of key epoch `epoch`. A topic the verified log does not
    /// know has no key (the caller syncs the log and tries again).
    fn symmetric_key(&self, target: &Target, epoch: u64) -> Option<SymmetricKey> {
        match target {
            Target::Group(_) | Target::Broadcast => {
                Some(self.root(epoch)?.mesh_key(&self.config.id))
            }
            Target::Topic(t) => {
                let info = self.roster.topic(t)?;
                if info.private {
                    self.private_topic_key(t, epoch).cloned()
                } else {
                    Some(self.root(epoch)?.topic_key(&self.config.id, t.as_bytes()))
                }
            }
            Target::Member(_) | Target::Session(_) => None,
        }
    }

    fn cert_signature_known(&self, cert: &SessionCert) -> bool {
        self.cert_signatures
            .lock()
            .is_ok_and(|c| c.get(&cert.session) == Some(cert))
    }

    fn remember_cert_signature(&self, cert: &SessionCert) {
        if let Ok(mut c) = self.cert_signatures.lock() {
            if c.len() > 4096 {
                c.clear();
            }
            c.insert(cert.session.0, cert.clone());
        }
    }

    fn shared_box_key(&self, sender_session: &PublicKey, mine: &PublicKey) -> Option<SharedBoxKey> {
        let key = if *mine == self.keys.member.public() {
            &self.keys.member
        } else if *mine == self.session.public() {
            &self.session.key
        } else {
            return None;
        };
        self.shared_key(sender_session, key).ok()
    }
}
