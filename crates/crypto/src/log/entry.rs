//! The entry types of the membership log and their JSON form.

use serde::{Deserialize, Serialize};

use crate::boxes::Nonce;
use crate::encoding::{Hash32, base64_bytes};
use crate::keys::{PublicKey, Signature};

/// A member's role. The owner is whoever signed the genesis entry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The genesis signer: every power, cannot be removed.
    Owner,
    /// May invite, remove members, change roles, rekey.
    Admin,
    /// May message; cannot change membership.
    Member,
}

/// How a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveKind {
    /// Removed by an admin; may come back with a new invite.
    Kick,
    /// Removed by an admin; the key may not be admitted again until unbanned.
    Ban,
    /// Left of its own accord.
    Leave,
}

/// A key confirmation: 32 bytes derived one-way from a new mesh root key or
/// private topic key (HKDF, `docs/security.md` §5), public in the entry that
/// seals the key, so every recipient can tell a seal that opens to the wrong
/// key from the right one. Lowercase hex in JSON.
pub type KeyConfirm = Hash32;

/// One member's copy of a new epoch's root key, sealed to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRootKey {
    /// The member key the key is sealed to.
    pub recipient: PublicKey,
    /// `crypto_box_seal(root_key, x25519(recipient))`: 32 + 48 bytes.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryBody {
    /// The first entry; its hash is the mesh id. Signed by the owner.
    Genesis {
        /// The owner's member key (equals the entry's author).
        owner: PublicKey,
        /// 16 random bytes so two meshes of one owner differ.
        #[serde(with = "base64_bytes")]
        nonce: Vec<u8>,
    },
    /// Sets a member's role (admin or member).
    Role {
        /// The member whose role changes.
        member: PublicKey,
        /// The new role (never `owner`).
        role: Role,
    },
    /// Authorizes an invite key.
    Invite {
        /// The invite's public key (derived from the invite secret).
        invite_key: PublicKey,
        /// The role joiners get.
        role: Role,
        /// How many admits it allows (≥ 1).
        max_uses: u32,
        /// Unix seconds after which it admits no one.
        expires_at: u64,
    },
    /// Revokes an invite key.
    RevokeInvite {
        /// The invite key revoked.
        invite_key: PublicKey,
    },
    /// Admits a new member; signed by the joiner and by the invite key.
    Admit {
        /// The new member's key (equals the entry's author).
        member: PublicKey,
        /// The invite used.
        invite_key: PublicKey,
    },
    /// Removes a member (kick, ban, or leave).
    Remove {
        /// The member removed.
        member: PublicKey,
        /// How.
        how: RemoveKind,
    },
    /// Lifts a ban (does not re-admit).
    Unban {
        /// The banned key.
        member: PublicKey,
    },
    /// Starts a new epoch: a fresh root key sealed to every current member
    /// (and to no one else).
    Rekey {
        /// The new epoch number (previous + 1).
        epoch: u64,
        /// One sealed copy per current member.
        sealed: Vec<SealedRootKey>,
        /// Key confirmation of the new root key ([`super::mesh_key_confirm`]):
        /// each recipient checks the key it opened against it.
        confirm: KeyConfirm,
    },
    /// A member's profile (display name, summary, peer type), encrypted under
    /// the epoch's profile key.
    Profile {
        /// The epoch whose profile key encrypts it.
        epoch: u64,
        /// secretbox nonce.
        nonce: Nonce,
        /// `crypto_secretbox` of the profile JSON.
        #[serde(with = "base64_bytes")]
        ciphertext: Vec<u8>,
    },
    /// Creates a topic; its author becomes its first member.
    TopicCreate {
        /// The topic name (`#name`), unique in the mesh; routing metadata.
        topic: String,
        /// Private topics use a random key sealed to each topic member;
        /// public ones a key every member derives from the epoch root.
        private: bool,
        /// A short description shown in `topic list` (routing metadata too).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
        /// Private only: the first topic key (epoch 0), sealed to the author.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sealed: Vec<SealedRootKey>,
        /// Private only (and then required): key confirmation of the first
        /// topic key ([`super::topic_key_confirm`], key epoch 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirm: Option<KeyConfirm>,
    },
    /// Adds a member to a topic: themselves (public topics), or by a topic
    /// member who seals the current topic key to them (private topics).
    TopicJoin {
        /// The topic.
        topic: String,
        /// The member joining.
        member: PublicKey,
        /// Private only: the current topic key sealed to `member`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sealed: Vec<SealedRootKey>,
    },
    /// Takes a member out of a topic (themselves, or by an admin). A private
    /// topic must be rekeyed before anyone posts to it again.
    TopicLeave {
        /// The topic.
        topic: String,
        /// The member leaving.
        member: PublicKey,
    },
    /// A private topic's new key, sealed to each remaining topic member.
    TopicRekey {
        /// The topic.
        topic: String,
        /// The new key epoch (previous + 1).
        epoch: u64,
        /// One sealed copy per topic member.
        sealed: Vec<SealedRootKey>,
        /// Key confirmation of the new topic key ([`super::topic_key_confirm`]).
        confirm: KeyConfirm,
    },
    /// Puts a member in a group (themselves, or by an admin), with an
    /// optional free-form role; joining again changes the role.
    GroupJoin {
        /// The group name (`@name`, hierarchical with `/`); routing metadata.
        group: String,
        /// The member.
        member: PublicKey,
        /// e.g. `lead`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// Takes a member out of a group (themselves, or by an admin).
    GroupLeave {
        /// The group.
        group: String,
        /// The member.
        member: PublicKey,
    },
}

/// A signed membership-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log (genesis is 0).
    pub seq: u64,
    /// Hash of the previous entry (all zero for genesis).
    pub prev: Hash32,
    /// The author's clock, unix seconds.
    pub at: u64,
    /// The signing key.
    pub author: PublicKey,
    /// What the entry says.
    pub body: EntryBody,
    /// ed25519 signature by `author` over the canonical entry.
    pub sig: Signature,
    /// For `admit` only: the invite key's signature over the same bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_sig: Option<Signature>,
}
