//! Topics and groups as the membership log defines them: who created which
//! topic, who is in each topic and group and since when (and who was, and
//! until when, so a message's recipients can be worked out as of the moment
//! it was sent), the sealed keys of private topics, and the entry bodies
//! that create, join and rekey a topic.
//!
//! The rules (checked by [`Roster::apply`](super::Roster::apply)) are in
//! `docs/security.md` §7.6.

use std::collections::BTreeMap;

use crate::boxes::{BoxError, SymmetricKey};
use crate::ids::MeshId;
use crate::keys::{PublicKey, SigningKey};

use super::entry::EntryBody;
use super::epochs::{BadSeal, KeyEpoch, SealScope};
use super::sign::{seal_key_to, topic_key_confirm};

/// Longest topic description, in bytes.
pub const MAX_TOPIC_DESCRIPTION_BYTES: usize = 256;
/// Longest group role (`lead`, `reviewer`, …), in bytes.
pub const MAX_GROUP_ROLE_BYTES: usize = 32;

/// A membership that ended: `[from, to)` in log positions (entry seqs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The member.
    pub member: PublicKey,
    /// The entry that started it.
    pub from: u64,
    /// The entry that ended it.
    pub to: u64,
}

/// Whether a member was in (current `since`, or a closed span) when the log
/// had `at_len` entries.
pub(super) fn was_in(
    current: Option<u64>,
    spans: &[Span],
    member: &PublicKey,
    at_len: u64,
) -> bool {
    current.is_some_and(|since| since < at_len)
        || spans
            .iter()
            .any(|s| s.member == *member && s.from < at_len && s.to >= at_len)
}

/// A topic as the log defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Private (sealed random key) or public (key derived from the epoch root).
    pub private: bool,
    /// What `topic create --description` said.
    pub description: String,
    /// Who created it.
    pub creator: PublicKey,
    /// The `topic_create` entry.
    pub created_seq: u64,
    /// Current members and the entry that added each.
    pub members: BTreeMap<PublicKey, u64>,
    /// Past memberships.
    pub spans: Vec<Span>,
    /// Private: the current key epoch.
    pub key_epoch: u64,
    /// Private: every key epoch, with its confirmation and seals (a
    /// `topic_join` adds its seal to the key epoch current then).
    pub key_epochs: BTreeMap<u64, KeyEpoch>,
    /// Private: a member left and no `topic_rekey` followed yet, so nobody
    /// may post until one does.
    pub needs_rekey: bool,
}

impl TopicInfo {
    /// Whether `member` was in the topic when the log had `at_len` entries.
    pub fn had_member(&self, member: &PublicKey, at_len: u64) -> bool {
        was_in(
            self.members.get(member).copied(),
            &self.spans,
            member,
            at_len,
        )
    }

    /// Opens the key of every key epoch of this private topic (`topic`)
    /// sealed to `mine`, oldest first, one result per key epoch: a seal that
    /// does not open or does not match its key epoch's confirmation is a
    /// [`BadSeal`] and keeps no other key epoch from opening.
    pub fn open_keys(
        &self,
        topic: &str,
        mesh_id: &MeshId,
        mine: &SigningKey,
    ) -> Vec<Result<(u64, SymmetricKey), Box<BadSeal>>> {
        self.key_epochs
            .iter()
            .filter_map(|(epoch, ke)| {
                let scope = SealScope::Topic {
                    topic: topic.to_owned(),
                    key_epoch: *epoch,
                };
                ke.open(mine, mesh_id, &scope)
                    .map(|r| r.map(|k| (*epoch, k)))
            })
            .collect()
    }
}

/// A group's members as the log defines them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// Current members: the entry that added each, and its role in the group.
    pub members: BTreeMap<PublicKey, (u64, Option<String>)>,
    /// Past memberships.
    pub spans: Vec<Span>,
}

impl GroupInfo {
    /// Whether `member` was in the group when the log had `at_len` entries.
    pub fn had_member(&self, member: &PublicKey, at_len: u64) -> bool {
        was_in(
            self.members.get(member).map(|(since, _)| *since),
            &self.spans,
            member,
            at_len,
        )
    }
}

/// Whether `group` is `target` or below it (`eng/backend` is under `eng`).
pub fn group_is_under(group: &str, target: &str) -> bool {
    group == target
        || group
            .strip_prefix(target)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A `topic_create` body; for a private topic also its first key (epoch 0),
/// sealed to `author` in the body with its confirmation.
pub fn topic_create_body(
    topic: &str,
    private: bool,
    description: &str,
    author: &PublicKey,
    mesh_id: &MeshId,
) -> Result<(EntryBody, Option<SymmetricKey>), BoxError> {
    let key = private.then(SymmetricKey::generate);
    let sealed = match &key {
        Some(k) => seal_key_to(k, &[*author])?,
        None => Vec::new(),
    };
    let body = EntryBody::TopicCreate {
        topic: topic.to_owned(),
        private,
        description: description.to_owned(),
        sealed,
        confirm: key
            .as_ref()
            .map(|k| topic_key_confirm(k, mesh_id, topic, 0)),
    };
    Ok((body, key))
}

/// A `topic_join` body adding `member`; for a private topic `current_key`
/// (the topic's key of its current epoch) is sealed to the member.
pub fn topic_join_body(
    topic: &str,
    member: &PublicKey,
    current_key: Option<&SymmetricKey>,
) -> Result<EntryBody, BoxError> {
    Ok(EntryBody::TopicJoin {
        topic: topic.to_owned(),
        member: *member,
        sealed: match current_key {
            Some(k) => seal_key_to(k, &[*member])?,
            None => Vec::new(),
        },
    })
}

/// A `topic_rekey` body: a fresh key for the next epoch of a private topic,
/// sealed to each current topic member, with its confirmation. Returns the
/// key too.
pub fn topic_rekey_body(
    topic: &str,
    info: &TopicInfo,
    mesh_id: &MeshId,
) -> Result<(EntryBody, SymmetricKey), BoxError> {
    let key = SymmetricKey::generate();
    let members: Vec<PublicKey> = info.members.keys().copied().collect();
    let epoch = info.key_epoch + 1;
    let body = EntryBody::TopicRekey {
        topic: topic.to_owned(),
        epoch,
        sealed: seal_key_to(&key, &members)?,
        confirm: topic_key_confirm(&key, mesh_id, topic, epoch),
    };
    Ok((body, key))
}
