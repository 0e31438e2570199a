//! The verifier of the membership log and the [`Roster`] it yields: who is a
//! member, with which role, which invites are open, the current epoch, who
//! may write the next `rekey`, and the sealed root keys of every epoch
//! (opened one epoch at a time, each checked against its key confirmation).
//! A roster can only grow by [`Roster::apply`], which checks every rule of
//! `docs/security.md` §7 and leaves the roster untouched when an entry is
//! refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::boxes::{EpochRootKey, Nonce};
use crate::encoding::Hash32;
use crate::keys::{PublicKey, SigningKey};

use super::entry::{EntryBody, LogEntry, RemoveKind, Role};
use super::epochs::{BadSeal, KeyEpoch, SealScope};
use super::sign::SEALED_ROOT_KEY_BYTES;
use super::spaces::{GroupInfo, Span, TopicInfo};

/// Largest profile ciphertext accepted in a `profile` entry.
pub const MAX_PROFILE_CIPHERTEXT_BYTES: usize = 4096;

/// A log entry refused by the verifier, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("membership log entry {seq} ({kind}): {fault}")]
pub struct LogError {
    /// Position of the first bad entry.
    pub seq: u64,
    /// Its kind (`genesis`, `admit`, …).
    pub kind: &'static str,
    /// What is wrong with it.
    pub fault: LogFault,
}

/// Why an entry was refused. Keys are shown as their first 8 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFault {
    /// `seq` is not the entry's position.
    #[error("out of order: expected position {expected}")]
    OutOfOrder {
        /// The position it should have.
        expected: u64,
    },
    /// `prev` is not the hash of the previous entry.
    #[error("does not chain to the previous entry (prev hash mismatch)")]
    BrokenChain,
    /// The log does not start with a genesis entry, or has a second one.
    #[error("a log starts with exactly one genesis entry")]
    Genesis,
    /// The author's signature (or the invite key's, for admit) is invalid.
    #[error("signature by {0} does not verify")]
    BadSignature(String),
    /// `invite_sig` on an entry that is not an admit, or missing on an admit.
    #[error("invite signature present on a non-admit entry or missing on an admit")]
    InviteSignature,
    /// The author may not write this entry.
    #[error("{author} is not allowed to: {action}")]
    Unauthorized {
        /// Short key of the author.
        author: String,
        /// What it tried.
        action: &'static str,
    },
    /// The entry names a key that is not a current member.
    #[error("{0} is not a current member")]
    NotAMember(String),
    /// The entry would admit a key that is already a member.
    #[error("{0} is already a member")]
    AlreadyMember(String),
    /// The key is banned.
    #[error("{0} is banned")]
    Banned(String),
    /// The invite key is not in the log.
    #[error("invite {0} does not exist")]
    UnknownInvite(String),
    /// The invite key was already authorized once.
    #[error("invite key {0} was already used for another invite")]
    DuplicateInvite(String),
    /// The invite was revoked.
    #[error("invite {invite} was revoked at entry {at}")]
    InviteRevoked {
        /// Short invite key.
        invite: String,
        /// Where it was revoked.
        at: u64,
    },
    /// The admit is dated after the invite's expiry.
    #[error("invite {0} had expired")]
    InviteExpired(String),
    /// The invite's uses were all taken.
    #[error("invite {invite} allows {max_uses} use(s) and all were taken")]
    InviteExhausted {
        /// Short invite key.
        invite: String,
        /// Its limit.
        max_uses: u32,
    },
    /// A bad field value (role, uses, expiry, size, epoch).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    /// A kick or ban not immediately followed by a rekey (by the owner or an admin).
    #[error("removal at entry {0} was not followed by a rekey from the owner or an admin")]
    MissingRekey(u64),
    /// A rekey whose recipients are not exactly the current members.
    #[error("rekey recipients are wrong: {0}")]
    RekeyRecipients(String),
}

pub(super) fn short(k: &PublicKey) -> String {
    k.to_hex()[..8].to_owned()
}

/// What the log says about one current member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Current role.
    pub role: Role,
    /// Entry that admitted it (0 for the owner).
    pub admitted_seq: u64,
    /// The invite it joined with (none for the owner).
    pub invite: Option<PublicKey>,
    /// Its latest `profile` entry, still encrypted.
    pub profile: Option<SealedProfile>,
}

/// An encrypted profile as it stands in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedProfile {
    /// Entry it came from.
    pub seq: u64,
    /// The epoch whose profile key encrypted it.
    pub epoch: u64,
    /// secretbox nonce.
    pub nonce: Nonce,
    /// secretbox output.
    pub ciphertext: Vec<u8>,
}

/// A member who left or was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    /// Kick, ban or leave.
    pub how: RemoveKind,
    /// The `remove` entry.
    pub seq: u64,
    /// When it had been admitted.
    pub admitted_seq: u64,
}

/// The state of an invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteState {
    /// Role granted to joiners.
    pub role: Role,
    /// Admits allowed.
    pub max_uses: u32,
    /// Admits so far.
    pub uses: u32,
    /// Unix seconds.
    pub expires_at: u64,
    /// The revoking entry, if revoked.
    pub revoked_at: Option<u64>,
    /// The `invite` entry.
    pub created_seq: u64,
    /// The mesh epoch when it was authorized (its welcome bundle holds that
    /// epoch's root key).
    pub epoch: u64,
    /// Who authorized it.
    pub author: PublicKey,
}

impl InviteState {
    /// Not revoked and uses left (expiry depends on the clock; see `expires_at`).
    pub fn is_open(&self) -> bool {
        self.revoked_at.is_none() && self.uses < self.max_uses
    }
}

/// The verified state of a mesh, derived from its whole membership log.
#[derive(Debug, Clone)]
pub struct Roster {
    mesh_id: Hash32,
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
    pub(super) members: BTreeMap<PublicKey, MemberInfo>,
    departed: BTreeMap<PublicKey, Departure>,
    banned: BTreeSet<PublicKey>,
    invites: BTreeMap<PublicKey, InviteState>,
    /// Every epoch a `rekey` began (epoch 0's key comes in invite bundles).
    epochs: BTreeMap<u64, KeyEpoch>,
    seq_of: HashMap<Hash32, u64>,
    /// Past mesh memberships (for "who was a member when this was sent").
    pub(super) member_spans: Vec<Span>,
    pub(super) topics: BTreeMap<String, TopicInfo>,
    pub(super) groups: BTreeMap<String, GroupInfo>,
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
            mesh_id: hash,
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

    /// Revokes, at entry `seq`, every open invite `member` authored and
    /// the invite `joined_with` (the one it was admitted with), if open.
    fn revoke_invites_of(&mut self, member: &PublicKey, joined_with: Option<PublicKey>, seq: u64) {
        for (key, inv) in self.invites.iter_mut() {
            let its = Some(*key) == joined_with || inv.author == *member;
            if its && inv.revoked_at.is_none() {
                inv.revoked_at = Some(seq);
            }
        }
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
    pub fn mesh_id(&self) -> Hash32 {
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

    /// Invariant: in every branch all checks come before the first mutation,
    /// so a refused entry leaves the roster exactly as it was (no clone needed,
    /// which keeps verifying an n-entry log linear).
    fn check_and_apply(&mut self, e: &LogEntry) -> Result<(), LogFault> {
        if e.seq != self.len {
            return Err(LogFault::OutOfOrder { expected: self.len });
        }
        if e.prev != self.head {
            return Err(LogFault::BrokenChain);
        }
        let is_admit = matches!(e.body, EntryBody::Admit { .. });
        if is_admit != e.invite_sig.is_some() {
            return Err(LogFault::InviteSignature);
        }
        let bytes = e.signed_bytes();
        e.author
            .verify(&bytes, &e.sig)
            .map_err(|_| LogFault::BadSignature(short(&e.author)))?;
        let author_role = self.role_of(&e.author);
        let is_admin = matches!(author_role, Some(Role::Owner | Role::Admin));
        // Rule 4: a kick or ban is repaired by a rekey from the owner or any
        // admin (not only the remover, who could otherwise freeze the log).
        if let Some(removal_seq) = self.pending_removal {
            let admin_rekey = is_admin && matches!(e.body, EntryBody::Rekey { .. });
            if !admin_rekey {
                return Err(LogFault::MissingRekey(removal_seq));
            }
        }
        let deny = |action| LogFault::Unauthorized {
            author: short(&e.author),
            action,
        };

        match &e.body {
            EntryBody::Genesis { .. } => return Err(LogFault::Genesis),
            EntryBody::Role { member, role } => {
                if !is_admin {
                    return Err(deny("change roles"));
                }
                let current = self
                    .role_of(member)
                    .ok_or_else(|| LogFault::NotAMember(short(member)))?;
                if current == Role::Owner || *role == Role::Owner {
                    return Err(deny("change the owner's role or make an owner"));
                }
                if (current == Role::Admin || *role == Role::Admin)
                    && author_role != Some(Role::Owner)
                {
                    return Err(deny("grant or take away admin (owner only)"));
                }
                if current == Role::Admin && *role != Role::Admin {
                    // Demoted: the invites it made as an admin stop
                    // admitting anyone, as if it had been removed.
                    self.revoke_invites_of(member, None, e.seq);
                }
                if let Some(m) = self.members.get_mut(member) {
                    m.role = *role;
                }
            }
            EntryBody::Invite {
                invite_key,
                role,
                max_uses,
                expires_at,
            } => {
                if !is_admin {
                    return Err(deny("create invites"));
                }
                match role {
                    Role::Owner => return Err(LogFault::Invalid("an invite cannot grant owner")),
                    Role::Admin if author_role != Some(Role::Owner) => {
                        return Err(deny("create admin invites (owner only)"));
                    }
                    _ => {}
                }
                if *max_uses == 0 {
                    return Err(LogFault::Invalid("max_uses must be at least 1"));
                }
                if *expires_at <= e.at {
                    return Err(LogFault::Invalid("invite expires before it is created"));
                }
                if self.invites.contains_key(invite_key) || self.is_member(invite_key) {
                    return Err(LogFault::DuplicateInvite(short(invite_key)));
                }
                self.invites.insert(
                    *invite_key,
                    InviteState {
                        role: *role,
                        max_uses: *max_uses,
                        uses: 0,
                        expires_at: *expires_at,
                        revoked_at: None,
                        created_seq: e.seq,
                        epoch: self.epoch,
                        author: e.author,
                    },
                );
            }
            EntryBody::RevokeInvite { invite_key } => {
                if !is_admin {
                    return Err(deny("revoke invites"));
                }
                let inv = self
                    .invites
                    .get_mut(invite_key)
                    .ok_or_else(|| LogFault::UnknownInvite(short(invite_key)))?;
                if let Some(at) = inv.revoked_at {
                    return Err(LogFault::InviteRevoked {
                        invite: short(invite_key),
                        at,
                    });
                }
                inv.revoked_at = Some(e.seq);
            }
            EntryBody::Admit { member, invite_key } => {
                if e.author != *member {
                    return Err(deny(
                        "admit someone else (an admit is signed by the joiner)",
                    ));
                }
                if self.is_member(member) {
                    return Err(LogFault::AlreadyMember(short(member)));
                }
                if self.banned.contains(member) {
                    return Err(LogFault::Banned(short(member)));
                }
                let inv = self
                    .invites
                    .get_mut(invite_key)
                    .ok_or_else(|| LogFault::UnknownInvite(short(invite_key)))?;
                if let Some(at) = inv.revoked_at {
                    return Err(LogFault::InviteRevoked {
                        invite: short(invite_key),
                        at,
                    });
                }
                if e.at > inv.expires_at {
                    return Err(LogFault::InviteExpired(short(invite_key)));
                }
                if inv.uses >= inv.max_uses {
                    return Err(LogFault::InviteExhausted {
                        invite: short(invite_key),
                        max_uses: inv.max_uses,
                    });
                }
                let invite_sig = e.invite_sig.as_ref().ok_or(LogFault::InviteSignature)?;
                invite_key
                    .verify(&bytes, invite_sig)
                    .map_err(|_| LogFault::BadSignature(short(invite_key)))?;
                inv.uses += 1;
                let role = inv.role;
                // Its bundle holds the root key of the invite's epoch: a
                // later epoch's key is owed to it by the next rekey.
                if inv.epoch < self.epoch {
                    self.owed.insert(*member);
                    self.needs_rekey = true;
                }
                self.departed.remove(member);
                self.members.insert(
                    *member,
                    MemberInfo {
                        role,
                        admitted_seq: e.seq,
                        invite: Some(*invite_key),
                        profile: None,
                    },
                );
            }
            EntryBody::Remove { member, how } => {
                let target_role = self
                    .role_of(member)
                    .ok_or_else(|| LogFault::NotAMember(short(member)))?;
                match how {
                    RemoveKind::Leave => {
                        if e.author != *member {
                            return Err(deny("make someone else leave (use kick)"));
                        }
                        if target_role == Role::Owner {
                            return Err(deny("leave as the owner"));
                        }
                    }
                    RemoveKind::Kick | RemoveKind::Ban => {
                        let allowed = match author_role {
                            Some(Role::Owner) => target_role != Role::Owner,
                            Some(Role::Admin) => target_role == Role::Member,
                            _ => false,
                        };
                        if !allowed {
                            return Err(deny("remove this member"));
                        }
                        self.pending_removal = Some(e.seq);
                        if *how == RemoveKind::Ban {
                            self.banned.insert(*member);
                        }
                    }
                }
                // Any removal, a leave too: the invite it joined with and
                // every invite it authored stop admitting anyone (and the
                // broker stops serving them), without an entry of their
                // own. So leaving just before a kick keeps no door open.
                let joined_with = self.members.get(member).and_then(|m| m.invite);
                self.revoke_invites_of(member, joined_with, e.seq);
                if let Some(info) = self.members.remove(member) {
                    self.departed.insert(
                        *member,
                        Departure {
                            how: *how,
                            seq: e.seq,
                            admitted_seq: info.admitted_seq,
                        },
                    );
                    self.member_spans.push(Span {
                        member: *member,
                        from: info.admitted_seq,
                        to: e.seq,
                    });
                }
                self.close_spaces(member, e.seq);
                self.owed.remove(member);
                self.needs_rekey = true;
            }
            EntryBody::Unban { member } => {
                if !is_admin {
                    return Err(deny("unban"));
                }
                if !self.banned.remove(member) {
                    return Err(LogFault::Invalid("unban of a key that is not banned"));
                }
            }
            EntryBody::Rekey {
                epoch,
                sealed,
                confirm,
            } => {
                // The owner and admins always; any other member only to
                // repair a leave or an owed key, or to re-roll an epoch a
                // member made (rule 4 above already kept everyone but the
                // owner and admins out while a kick or ban is pending).
                let author_role =
                    author_role.ok_or_else(|| LogFault::NotAMember(short(&e.author)))?;
                if !self.may_rekey(&e.author) {
                    return Err(deny(
                        "rekey (a member may only when a member left, a joiner is owed the key, or the current key was made by a member)",
                    ));
                }
                if *epoch != self.epoch + 1 {
                    return Err(LogFault::Invalid(
                        "rekey epoch must be the current epoch + 1",
                    ));
                }
                let mut recipients = BTreeSet::new();
                for s in sealed {
                    if s.ciphertext.len() != SEALED_ROOT_KEY_BYTES {
                        return Err(LogFault::Invalid("sealed root key must be 80 bytes"));
                    }
                    if !self.is_member(&s.recipient) {
                        return Err(LogFault::RekeyRecipients(format!(
                            "{} is not a current member",
                            short(&s.recipient)
                        )));
                    }
                    if !recipients.insert(s.recipient) {
                        return Err(LogFault::RekeyRecipients(format!(
                            "{} appears twice",
                            short(&s.recipient)
                        )));
                    }
                }
                if let Some(missing) = self.members.keys().find(|m| !recipients.contains(m)) {
                    return Err(LogFault::RekeyRecipients(format!(
                        "member {} is left out",
                        short(missing)
                    )));
                }
                self.epoch = *epoch;
                self.epochs.insert(
                    *epoch,
                    KeyEpoch::new(e.seq, e.author, author_role, *confirm, sealed),
                );
                self.needs_rekey = false;
                self.pending_removal = None;
                self.owed.clear();
            }
            EntryBody::TopicCreate { .. }
            | EntryBody::TopicJoin { .. }
            | EntryBody::TopicLeave { .. }
            | EntryBody::TopicRekey { .. }
            | EntryBody::GroupJoin { .. }
            | EntryBody::GroupLeave { .. } => self.apply_space(e, author_role)?,
            EntryBody::Profile {
                epoch,
                nonce,
                ciphertext,
            } => {
                if *epoch > self.epoch {
                    return Err(LogFault::Invalid("profile epoch is in the future"));
                }
                if ciphertext.len() > MAX_PROFILE_CIPHERTEXT_BYTES {
                    return Err(LogFault::Invalid("profile is larger than 4096 bytes"));
                }
                let m = self
                    .members
                    .get_mut(&e.author)
                    .ok_or_else(|| LogFault::NotAMember(short(&e.author)))?;
                m.profile = Some(SealedProfile {
                    seq: e.seq,
                    epoch: *epoch,
                    nonce: *nonce,
                    ciphertext: ciphertext.clone(),
                });
            }
        }
        let hash = e.hash();
        self.seq_of.insert(hash, e.seq);
        self.head = hash;
        self.len += 1;
        Ok(())
    }
}
