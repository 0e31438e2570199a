//! `LogBuilder`: writes a valid membership log step by step (signing each
//! entry with the right key and chaining it), verifying as it goes. Clients
//! use it to author entries; tests and benchmarks use it to build meshes.

use crate::boxes::{BoxError, EpochRootKey};
use crate::keys::{PublicKey, SigningKey};

use super::entry::{EntryBody, LogEntry, RemoveKind, Role};
use super::fault::LogError;
use super::roster::Roster;
use super::sign::rekey_body;

/// Why the builder could not add an entry.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The entry was refused by the verifier.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A root key could not be sealed.
    #[error(transparent)]
    Box(#[from] BoxError),
}

/// A log under construction, with its verified roster.
#[derive(Debug, Clone)]
pub struct LogBuilder {
    entries: Vec<LogEntry>,
    roster: Roster,
}

impl LogBuilder {
    /// Starts a new mesh owned by `owner`.
    pub fn new(owner: &SigningKey, at: u64) -> Self {
        let genesis = LogEntry::genesis(owner, at);
        // A genesis we just signed always verifies.
        match Roster::from_genesis(&genesis) {
            Ok(roster) => LogBuilder {
                entries: vec![genesis],
                roster,
            },
            Err(e) => unreachable!("a freshly signed genesis verifies: {e}"),
        }
    }

    /// Continues from an already verified log.
    pub fn from_verified(entries: Vec<LogEntry>, roster: Roster) -> Self {
        LogBuilder { entries, roster }
    }

    /// The entries so far.
    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    /// The verified roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Consumes the builder.
    pub fn into_parts(self) -> (Vec<LogEntry>, Roster) {
        (self.entries, self.roster)
    }

    /// Signs `body` as the next entry by `author`, verifies and appends it.
    pub fn push(
        &mut self,
        author: &SigningKey,
        at: u64,
        body: EntryBody,
    ) -> Result<&LogEntry, BuildError> {
        let entry = LogEntry::sign(author, self.roster.len(), self.roster.head(), at, body);
        self.push_entry(entry)
    }

    /// Verifies and appends an already signed entry.
    pub fn push_entry(&mut self, entry: LogEntry) -> Result<&LogEntry, BuildError> {
        self.roster.apply(&entry)?;
        self.entries.push(entry);
        Ok(&self.entries[self.entries.len() - 1])
    }

    /// Authorizes an invite key.
    pub fn invite(
        &mut self,
        admin: &SigningKey,
        invite: &PublicKey,
        role: Role,
        max_uses: u32,
        at: u64,
        expires_at: u64,
    ) -> Result<&LogEntry, BuildError> {
        let body = EntryBody::Invite {
            invite_key: *invite,
            role,
            max_uses,
            expires_at,
        };
        self.push(admin, at, body)
    }

    /// Admits `member` with `invite` (signed by both).
    pub fn admit(
        &mut self,
        member: &SigningKey,
        invite: &SigningKey,
        at: u64,
    ) -> Result<&LogEntry, BuildError> {
        let entry = LogEntry::admit(member, invite, self.roster.len(), self.roster.head(), at);
        self.push_entry(entry)
    }

    /// Invites and admits a fresh member key in one go (two entries).
    pub fn add_member(
        &mut self,
        admin: &SigningKey,
        role: Role,
        at: u64,
    ) -> Result<SigningKey, BuildError> {
        let invite = SigningKey::generate();
        let member = SigningKey::generate();
        self.invite(admin, &invite.public(), role, 1, at, at + 3600)?;
        self.admit(&member, &invite, at)?;
        Ok(member)
    }

    /// Removes a member; a kick or ban is followed by a rekey to everyone
    /// remaining (the log requires it). Returns the new root key, if any.
    pub fn remove(
        &mut self,
        admin: &SigningKey,
        member: &PublicKey,
        how: RemoveKind,
        at: u64,
    ) -> Result<Option<EpochRootKey>, BuildError> {
        self.push(
            admin,
            at,
            EntryBody::Remove {
                member: *member,
                how,
            },
        )?;
        if how == RemoveKind::Leave {
            return Ok(None);
        }
        self.rekey(admin, at).map(Some)
    }

    /// Starts a new epoch sealed to every current member.
    pub fn rekey(&mut self, admin: &SigningKey, at: u64) -> Result<EpochRootKey, BuildError> {
        let root = EpochRootKey::generate(self.roster.epoch() + 1);
        let recipients: Vec<PublicKey> = self.roster.members().keys().copied().collect();
        let body = rekey_body(&root, &self.roster.mesh_id(), &recipients)?;
        self.push(admin, at, body)?;
        Ok(root)
    }
}
