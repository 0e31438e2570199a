//! The verifier of the membership log and the [`Roster`] it yields: who is a
//! member, with which role, which invites are open, the current epoch, who
//! may write the next `rekey`, and the sealed root keys of every epoch
//! (opened one epoch at a time, each checked against its key confirmation).
//! A roster can only grow by [`Roster::apply`], which checks every rule of
//! `docs/security.md` §7 and leaves the roster untouched when an entry is
//! refused.
//!
//! - this file: the roster's state, [`verify_log`] and the queries;
//! - `rules`: the check of each mesh entry kind (genesis aside), §7.3;
//! - `spaces`: the topic and group entries (§7.6) and who receives what.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::boxes::EpochRootKey;
use crate::encoding::Hash32;
use crate::ids::MeshId;
use crate::keys::{PublicKey, SigningKey};

use super::entry::{EntryBody, LogEntry, Role};
use super::epochs::{BadSeal, KeyEpoch, SealScope};
use super::fault::{LogError, LogFault, short};
use super::records::{Departure, InviteState, MemberInfo};
use super::spaces::{GroupInfo, Span, TopicInfo};

mod rules;
mod spaces;

/// The verified state of a mesh, derived from its whole membership log.
#[derive(Debug, Clone)]
pub struct Roster {
    mesh_id: MeshId,
    head: Hash32,
    len: u64,
    owner: PublicKey,
    epoch: u64,
    needs_rekey: bool,
    /// A kick or ban (its seq) that the very next entry must follow with a rekey.
    pending_removal: Option<u64>,
    /// Members admitted with an invite of an earlier epoch since the last
    /// rekey: they lack the current root key, which a rekey owes them.
    owed: BTreeSet<PublicKey>,
    members: BTreeMap<PublicKey, MemberInfo>,
    departed: BTreeMap<PublicKey, Departure>,
    banned: BTreeSet<PublicKey>,
    invites: BTreeMap<PublicKey, InviteState>,
    /// Every epoch a `rekey` began (epoch 0's key comes in invite bundles).
    epochs: BTreeMap<u64, KeyEpoch>,
    seq_of: HashMap<Hash32, u64>,
    /// Past mesh memberships (for "who was a member when this was sent").
    member_spans: Vec<Span>,
    topics: BTreeMap<String, TopicInfo>,
    groups: BTreeMap<String, GroupInfo>,
}

/// Verifies a whole log from genesis, returning the roster or the first bad entry.
pub fn verify_log(entries: &[LogEntry]) -> Result<Roster, LogError> {
    let (first, rest) = entries.split_first().ok_or(LogError {
        seq: 0,
        kind: "genesis",
        fault: LogFault::Genesis,
    })?;
    let mut roster = Roster::from_genesis(first)?;
    for e in rest {
        roster.apply(e)?;
    }
    Ok(roster)
}

impl Roster {
    /// Starts a roster from a genesis entry.
    pub fn from_genesis(entry: &LogEntry) -> Result<Self, LogError> {
        let err = |fault| LogError {
            seq: entry.seq,
            kind: entry.body.kind(),
            fault,
        };
        let EntryBody::Genesis { owner, nonce } = &entry.body else {
            return Err(err(LogFault::Genesis));
        };
        if entry.seq != 0 {
            return Err(err(LogFault::OutOfOrder { expected: 0 }));
        }
        if entry.prev != Hash32::ZERO || entry.author != *owner {
            return Err(err(LogFault::Genesis));
        }
        if nonce.len() != 16 {
            return Err(err(LogFault::Invalid("genesis nonce must be 16 bytes")));
        }
        if entry.invite_sig.is_some() {
            return Err(err(LogFault::InviteSignature));
        }
        entry
            .author
            .verify(&entry.signed_bytes(), &entry.sig)
            .map_err(|_| err(LogFault::BadSignature(short(&entry.author))))?;
        let hash = entry.hash();
        let mut members = BTreeMap::new();
        members.insert(
            *owner,
            MemberInfo {
                role: Role::Owner,
                admitted_seq: 0,
                invite: None,
                profile: None,
            },
        );
        Ok(Roster {
            mesh_id: MeshId(hash),
            head: hash,
            len: 1,
            owner: *owner,
            epoch: 0,
            needs_rekey: false,
            pending_removal: None,
            owed: BTreeSet::new(),
            members,
            departed: BTreeMap::new(),
            banned: BTreeSet::new(),
            invites: BTreeMap::new(),
            epochs: BTreeMap::new(),
            seq_of: HashMap::from([(hash, 0)]),
            member_spans: Vec::new(),
            topics: BTreeMap::new(),
            groups: BTreeMap::new(),
        })
    }

    /// Verifies `entry` as the next entry and applies it. On error the roster
    /// is unchanged.
    pub fn apply(&mut self, entry: &LogEntry) -> Result<(), LogError> {
        self.check_and_apply(entry).map_err(|fault| LogError {
            seq: entry.seq,
            kind: entry.body.kind(),
            fault,
        })
    }

    /// The mesh id (hash of the genesis entry).
    pub fn mesh_id(&self) -> MeshId {
        self.mesh_id
    }

    /// Hash of the last entry.
    pub fn head(&self) -> Hash32 {
        self.head
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never true: a roster holds at least its genesis.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The owner key.
    pub fn owner(&self) -> PublicKey {
        self.owner
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// True when the current root key must be replaced before anything is
    /// sealed to the whole mesh again: a member left or was removed, or a
    /// joiner is owed the key, and no rekey followed yet.
    pub fn needs_rekey(&self) -> bool {
        self.needs_rekey
    }

    /// The kick or ban (its seq) the next entry must follow with a rekey by
    /// the owner or an admin, if any.
    pub fn pending_removal(&self) -> Option<u64> {
        self.pending_removal
    }

    /// Members admitted since the last rekey with an invite of an earlier
    /// epoch: they lack the current root key until the next rekey.
    pub fn owed(&self) -> &BTreeSet<PublicKey> {
        &self.owed
    }

    /// Whether `author` may write the next `rekey` (rule "rekey" of
    /// `docs/security.md` §7.3): the owner and admins always; another
    /// current member when no kick or ban is pending and either the roster
    /// needs a rekey (a member left, or a joiner is owed the key) or the
    /// current epoch was begun by someone who was not the owner or an
    /// admin (so any member can re-roll a member-made key).
    pub fn may_rekey(&self, author: &PublicKey) -> bool {
        match self.role_of(author) {
            Some(Role::Owner | Role::Admin) => true,
            Some(Role::Member) => {
                self.pending_removal.is_none()
                    && (self.needs_rekey || self.current_epoch_is_member_made())
            }
            None => false,
        }
    }

    /// Whether the current epoch was begun by a rekey whose author was
    /// neither the owner nor an admin.
    pub fn current_epoch_is_member_made(&self) -> bool {
        self.epochs
            .get(&self.epoch)
            .is_some_and(|e| e.author_role == Role::Member)
    }

    /// Current members.
    pub fn members(&self) -> &BTreeMap<PublicKey, MemberInfo> {
        &self.members
    }

    /// A current member's record.
    pub fn member(&self, key: &PublicKey) -> Option<&MemberInfo> {
        self.members.get(key)
    }

    /// Whether `key` is a current member.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.members.contains_key(key)
    }

    /// A current member's role.
    pub fn role_of(&self, key: &PublicKey) -> Option<Role> {
        self.members.get(key).map(|m| m.role)
    }

    /// Members who left or were removed (latest departure per key).
    pub fn departed(&self) -> &BTreeMap<PublicKey, Departure> {
        &self.departed
    }

    /// Banned keys.
    pub fn banned(&self) -> &BTreeSet<PublicKey> {
        &self.banned
    }

    /// Every invite ever authorized.
    pub fn invites(&self) -> &BTreeMap<PublicKey, InviteState> {
        &self.invites
    }

    /// Position of the entry with this hash, if it is in the log.
    pub fn seq_of(&self, hash: &Hash32) -> Option<u64> {
        self.seq_of.get(hash).copied()
    }

    /// Whether `key` was a member as of the entry `head` (a log head a sender
    /// claimed when it signed a message). Unknown heads answer for the
    /// current state.
    pub fn was_member_at(&self, key: &PublicKey, head: &Hash32) -> bool {
        let Some(at) = self.seq_of(head) else {
            return self.is_member(key);
        };
        if let Some(m) = self.members.get(key) {
            return m.admitted_seq <= at;
        }
        self.departed
            .get(key)
            .is_some_and(|d| d.admitted_seq <= at && d.seq > at)
    }

    /// The sealed copy of an epoch's root key addressed to `recipient`.
    pub fn sealed_root_key(&self, epoch: u64, recipient: &PublicKey) -> Option<&[u8]> {
        self.epochs
            .get(&epoch)?
            .seals
            .get(recipient)
            .map(|s| s.ciphertext.as_slice())
    }

    /// The epochs begun by a `rekey` (epoch 1 onwards).
    pub fn key_epochs(&self) -> &BTreeMap<u64, KeyEpoch> {
        &self.epochs
    }

    /// Opens the root key of `epoch` sealed to `mine`, checked against the
    /// epoch's key confirmation; `None` when nothing of that epoch is sealed
    /// to `mine`.
    pub fn open_root_key(
        &self,
        epoch: u64,
        mine: &SigningKey,
    ) -> Option<Result<EpochRootKey, Box<BadSeal>>> {
        let scope = SealScope::Mesh { epoch };
        let opened = self.epochs.get(&epoch)?.open(mine, &self.mesh_id, &scope)?;
        Some(opened.map(|k| EpochRootKey::from_bytes(epoch, *k.as_bytes())))
    }

    /// Opens every epoch root key sealed to `mine`, oldest first, one
    /// result per epoch: a seal that does not open or does not match its
    /// confirmation is a [`BadSeal`] and keeps no other epoch from opening.
    pub fn open_root_keys(&self, mine: &SigningKey) -> Vec<Result<EpochRootKey, Box<BadSeal>>> {
        self.epochs
            .keys()
            .filter_map(|epoch| self.open_root_key(*epoch, mine))
            .collect()
    }
}
