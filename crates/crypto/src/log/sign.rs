//! Signing and hashing of membership-log entries: the canonical signed bytes,
//! the entry hash (chain link and mesh id), and constructors that sign.

use crate::boxes::{BoxError, EpochRootKey, Nonce, SymmetricKey, hkdf_sha256, open_sealed, seal};
use crate::encoding::{Hash32, Transcript, label};
use crate::ids::MeshId;
use crate::keys::{PublicKey, SigningKey, random_bytes};

use super::entry::{EntryBody, KeyConfirm, LogEntry, RemoveKind, Role, SealedRootKey};

/// Bytes of a root key sealed with `crypto_box_seal` (32 + 48).
pub const SEALED_ROOT_KEY_BYTES: usize = 32 + crate::boxes::SEAL_BYTES;

impl Role {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl RemoveKind {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            RemoveKind::Kick => "kick",
            RemoveKind::Ban => "ban",
            RemoveKind::Leave => "leave",
        }
    }
}

impl EntryBody {
    /// The wire name of the entry kind.
    pub fn kind(&self) -> &'static str {
        match self {
            EntryBody::Genesis { .. } => "genesis",
            EntryBody::Role { .. } => "role",
            EntryBody::Invite { .. } => "invite",
            EntryBody::RevokeInvite { .. } => "revoke_invite",
            EntryBody::Admit { .. } => "admit",
            EntryBody::Remove { .. } => "remove",
            EntryBody::Unban { .. } => "unban",
            EntryBody::Rekey { .. } => "rekey",
            EntryBody::Profile { .. } => "profile",
            EntryBody::TopicCreate { .. } => "topic_create",
            EntryBody::TopicJoin { .. } => "topic_join",
            EntryBody::TopicLeave { .. } => "topic_leave",
            EntryBody::TopicRekey { .. } => "topic_rekey",
            EntryBody::GroupJoin { .. } => "group_join",
            EntryBody::GroupLeave { .. } => "group_leave",
        }
    }

    fn encode(&self, t: &mut Transcript) {
        t.str(self.kind());
        match self {
            EntryBody::Genesis { owner, nonce } => {
                t.bytes(owner.as_bytes()).bytes(nonce);
            }
            EntryBody::Role { member, role } => {
                t.bytes(member.as_bytes()).str(role.as_str());
            }
            EntryBody::Invite {
                invite_key,
                role,
                max_uses,
                expires_at,
            } => {
                t.bytes(invite_key.as_bytes())
                    .str(role.as_str())
                    .u64(u64::from(*max_uses))
                    .u64(*expires_at);
            }
            EntryBody::RevokeInvite { invite_key } => {
                t.bytes(invite_key.as_bytes());
            }
            EntryBody::Admit { member, invite_key } => {
                t.bytes(member.as_bytes()).bytes(invite_key.as_bytes());
            }
            EntryBody::Remove { member, how } => {
                t.bytes(member.as_bytes()).str(how.as_str());
            }
            EntryBody::Unban { member } => {
                t.bytes(member.as_bytes());
            }
            EntryBody::Rekey {
                epoch,
                sealed,
                confirm,
            } => {
                t.u64(*epoch);
                encode_sealed(t, sealed);
                t.bytes(confirm.as_bytes());
            }
            EntryBody::TopicCreate {
                topic,
                private,
                description,
                sealed,
                confirm,
            } => {
                t.str(topic).u64(u64::from(*private)).str(description);
                encode_sealed(t, sealed);
                // Present exactly on private topics (the verifier checks),
                // whose `private` field is signed above: no ambiguity.
                if let Some(c) = confirm {
                    t.bytes(c.as_bytes());
                }
            }
            EntryBody::TopicJoin {
                topic,
                member,
                sealed,
            } => {
                t.str(topic).bytes(member.as_bytes());
                encode_sealed(t, sealed);
            }
            EntryBody::TopicLeave { topic, member } => {
                t.str(topic).bytes(member.as_bytes());
            }
            EntryBody::TopicRekey {
                topic,
                epoch,
                sealed,
                confirm,
            } => {
                t.str(topic).u64(*epoch);
                encode_sealed(t, sealed);
                t.bytes(confirm.as_bytes());
            }
            EntryBody::GroupJoin {
                group,
                member,
                role,
            } => {
                t.str(group)
                    .bytes(member.as_bytes())
                    .opt_bytes(role.as_ref().map(String::as_bytes));
            }
            EntryBody::GroupLeave { group, member } => {
                t.str(group).bytes(member.as_bytes());
            }
            EntryBody::Profile {
                epoch,
                nonce,
                ciphertext,
            } => {
                t.u64(*epoch).bytes(&nonce.0).bytes(ciphertext);
            }
        }
    }
}

fn encode_sealed(t: &mut Transcript, sealed: &[SealedRootKey]) {
    t.list_len(sealed.len());
    for s in sealed {
        t.bytes(s.recipient.as_bytes()).bytes(&s.ciphertext);
    }
}

impl LogEntry {
    /// The canonical bytes the author (and, for `admit`, the invite key) signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(self.seq, &self.prev, self.at, &self.author, &self.body)
    }

    /// The entry hash: `SHA-256(Transcript("claudemesh/log-hash/v1") ‖
    /// field(signed bytes) ‖ field(sig) ‖ opt(invite_sig))`. The hash of the
    /// genesis entry is the mesh id; the hash of the last entry is the head.
    pub fn hash(&self) -> Hash32 {
        let mut t = Transcript::new(label::LOG_HASH);
        t.bytes(&self.signed_bytes())
            .bytes(&self.sig.0)
            .opt_bytes(self.invite_sig.as_ref().map(|s| &s.0[..]));
        t.sha256()
    }

    /// Signs an entry of any kind but `admit` (see [`LogEntry::admit`]).
    pub fn sign(author: &SigningKey, seq: u64, prev: Hash32, at: u64, body: EntryBody) -> Self {
        let author_pk = author.public();
        let bytes = signed_bytes(seq, &prev, at, &author_pk, &body);
        LogEntry {
            seq,
            prev,
            at,
            author: author_pk,
            sig: author.sign(&bytes),
            body,
            invite_sig: None,
        }
    }

    /// A genesis entry for a new mesh owned by `owner`; its hash is the mesh id.
    pub fn genesis(owner: &SigningKey, at: u64) -> Self {
        let body = EntryBody::Genesis {
            owner: owner.public(),
            nonce: random_bytes::<16>().to_vec(),
        };
        Self::sign(owner, 0, Hash32::ZERO, at, body)
    }

    /// An `admit` entry: signed by the joiner's new member key and by the
    /// invite key derived from the invite secret.
    pub fn admit(
        member: &SigningKey,
        invite: &SigningKey,
        seq: u64,
        prev: Hash32,
        at: u64,
    ) -> Self {
        let body = EntryBody::Admit {
            member: member.public(),
            invite_key: invite.public(),
        };
        let mut entry = Self::sign(member, seq, prev, at, body);
        entry.invite_sig = Some(invite.sign(&entry.signed_bytes()));
        entry
    }
}

fn signed_bytes(seq: u64, prev: &Hash32, at: u64, author: &PublicKey, body: &EntryBody) -> Vec<u8> {
    let mut t = Transcript::new(label::LOG_ENTRY);
    t.u64(seq)
        .bytes(prev.as_bytes())
        .u64(at)
        .bytes(author.as_bytes());
    body.encode(&mut t);
    t.into_bytes()
}

/// Builds a `rekey` body: `root` sealed to each recipient's X25519 key, with
/// its key confirmation.
pub fn rekey_body(
    root: &EpochRootKey,
    mesh_id: &MeshId,
    recipients: &[PublicKey],
) -> Result<EntryBody, BoxError> {
    Ok(EntryBody::Rekey {
        epoch: root.epoch,
        sealed: seal_key_to(root.key(), recipients)?,
        confirm: mesh_key_confirm(root, mesh_id),
    })
}

/// What a key confirmation is about: a mesh epoch's root key, or one key
/// epoch of a private topic. Part of the HKDF info, so a confirmation for one
/// can never pass for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmContext<'a> {
    /// The root key of mesh epoch `epoch`.
    Mesh {
        /// The mesh epoch.
        epoch: u64,
    },
    /// The key of a private topic's key epoch.
    Topic {
        /// The topic name.
        topic: &'a str,
        /// The topic's key epoch.
        key_epoch: u64,
    },
}

/// The key confirmation of `key`:
/// `HKDF-SHA256(ikm = key, salt = mesh id, info = Transcript("claudemesh/key-confirm/v1")
/// .str("mesh").u64(epoch))` for a mesh epoch, `… .str("topic").str(topic).u64(key_epoch)`
/// for a private topic. HKDF's output reveals nothing of its input key, and
/// its info differs from every key derivation's, so the confirmation is
/// safe to publish.
pub fn key_confirm(key: &SymmetricKey, mesh_id: &MeshId, ctx: ConfirmContext<'_>) -> KeyConfirm {
    let mut info = Transcript::new(label::KEY_CONFIRM);
    match ctx {
        ConfirmContext::Mesh { epoch } => {
            info.str("mesh").u64(epoch);
        }
        ConfirmContext::Topic { topic, key_epoch } => {
            info.str("topic").str(topic).u64(key_epoch);
        }
    }
    Hash32(*hkdf_sha256(key.as_bytes(), mesh_id.as_bytes(), info.as_bytes()).as_bytes())
}

/// The key confirmation of a mesh epoch's root key.
pub fn mesh_key_confirm(root: &EpochRootKey, mesh_id: &MeshId) -> KeyConfirm {
    key_confirm(
        root.key(),
        mesh_id,
        ConfirmContext::Mesh { epoch: root.epoch },
    )
}

/// The key confirmation of a private topic's key of `key_epoch`.
pub fn topic_key_confirm(
    key: &SymmetricKey,
    mesh_id: &MeshId,
    topic: &str,
    key_epoch: u64,
) -> KeyConfirm {
    key_confirm(key, mesh_id, ConfirmContext::Topic { topic, key_epoch })
}

/// Seals a 32-byte key (an epoch root or a private topic key) to each
/// recipient's X25519 key with `crypto_box_seal`.
pub fn seal_key_to(
    key: &SymmetricKey,
    recipients: &[PublicKey],
) -> Result<Vec<SealedRootKey>, BoxError> {
    recipients
        .iter()
        .map(|r| {
            Ok(SealedRootKey {
                recipient: *r,
                ciphertext: seal(key.as_bytes(), &r.to_box_public())?,
            })
        })
        .collect()
}

/// Opens a sealed 32-byte key with the key it was sealed to.
pub fn open_sealed_key(sealed: &[u8], mine: &SigningKey) -> Result<SymmetricKey, BoxError> {
    let bytes = open_sealed(sealed, &mine.to_box_secret())?;
    SymmetricKey::from_slice(&bytes).ok_or(BoxError::Authentication)
}

/// Opens my copy of an epoch's root key from its sealed form, with the member
/// key it was sealed to. This does not check the key confirmation: use
/// [`super::Roster::open_root_keys`] for that.
pub fn open_root_key(
    epoch: u64,
    sealed: &[u8],
    mine: &SigningKey,
) -> Result<EpochRootKey, BoxError> {
    let bytes = open_sealed(sealed, &mine.to_box_secret())?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| BoxError::Authentication)?;
    Ok(EpochRootKey::from_bytes(epoch, key))
}

/// What kind of peer a member is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum PeerType {
    /// A Claude Code session or other model.
    #[default]
    Ai,
    /// A person.
    Human,
    /// A script or service.
    Bot,
}

impl PeerType {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            PeerType::Ai => "ai",
            PeerType::Human => "human",
            PeerType::Bot => "bot",
        }
    }
}

impl std::str::FromStr for PeerType {
    type Err = crate::encoding::DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ai" => Ok(PeerType::Ai),
            "human" => Ok(PeerType::Human),
            "bot" => Ok(PeerType::Bot),
            _ => Err(crate::encoding::DecodeError::Invalid(
                "peer type (ai|human|bot)",
            )),
        }
    }
}

/// A member's profile, as encrypted in a `profile` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// One-line summary of what the member is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Peer type.
    #[serde(default)]
    pub peer_type: PeerType,
}

/// Why a profile could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// Wrong epoch key or altered ciphertext.
    #[error("profile does not decrypt: {0}")]
    Decrypt(#[from] BoxError),
    /// Decrypted bytes are not a profile.
    #[error("profile is not valid JSON")]
    Format,
}

impl Profile {
    /// A `profile` body: the JSON of `self` in a secretbox under the epoch's
    /// profile key.
    pub fn seal(&self, root: &EpochRootKey, mesh_id: &MeshId) -> EntryBody {
        let nonce = Nonce::random();
        // Serializing a struct of strings cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        EntryBody::Profile {
            epoch: root.epoch,
            ciphertext: root.profile_key(mesh_id).encrypt(&json, &nonce),
            nonce,
        }
    }

    /// Opens a profile sealed by [`Profile::seal`].
    pub fn open(
        root: &EpochRootKey,
        mesh_id: &MeshId,
        nonce: &Nonce,
        ciphertext: &[u8],
    ) -> Result<Profile, ProfileError> {
        let pt = root.profile_key(mesh_id).decrypt(ciphertext, nonce)?;
        serde_json::from_slice(&pt).map_err(|_| ProfileError::Format)
    }
}
