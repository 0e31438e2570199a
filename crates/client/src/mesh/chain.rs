//! Signed entries built one after another on a copy of the verified
//! roster, so a change the log would refuse fails here, with the
//! verifier's reason, before anything is sent; and the refusals that
//! building them can meet.

use claudemesh_crypto::log::{EntryBody, LogEntry, LogError, LogFault, Roster};
use claudemesh_proto::ErrorCode;
use claudemesh_proto::limits::MAX_LOG_ENTRIES_PER_FRAME;

use super::state::MeshState;
use crate::error::ClientError;
use claudemesh_proto::clock::now_ms;

pub(crate) fn forbidden(message: impl Into<String>) -> ClientError {
    ClientError::Refused {
        code: ErrorCode::Forbidden,
        message: message.into(),
    }
}

pub(crate) fn not_allowed(message: impl Into<String>) -> ClientError {
    ClientError::NotAllowed(message.into())
}

pub(crate) fn box_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::SealKey {
        reason: e.to_string(),
    }
}

/// A log entry this member built that the verifier refuses: not a sign
/// that the broker lies (it is our own entry), so never a security error.
fn refused_entry(e: LogError) -> ClientError {
    match e.fault {
        LogFault::Unauthorized { action, .. } => {
            forbidden(format!("you are not allowed to {action}"))
        }
        LogFault::MissingRekey(seq) => ClientError::Refused {
            code: ErrorCode::RekeyRequired,
            message: format!(
                "the kick or ban at log entry {seq} still waits for its new mesh key, and nothing else may be appended first; an owner or admin must write it (`claudemesh mesh rekey`)"
            ),
        },
        fault => ClientError::ChangeRefused(fault),
    }
}

/// Entries signed by this member one after another, each checked against
/// a copy of the verified roster (so a change the log would refuse fails
/// here, with the verifier's reason, before anything is sent).
#[derive(Debug)]
pub struct Chain<'a> {
    state: &'a MeshState,
    /// The roster as it will be after the entries so far.
    pub roster: Roster,
    /// The entries so far.
    pub entries: Vec<LogEntry>,
    at: u64,
}

impl<'a> Chain<'a> {
    /// A chain that starts at the head of the verified log.
    pub fn new(state: &'a MeshState) -> Self {
        Chain {
            state,
            roster: state.roster().clone(),
            entries: Vec::new(),
            at: now_ms() / 1000,
        }
    }

    /// Signs `body` as the next entry and checks it.
    pub fn push(&mut self, body: EntryBody) -> Result<(), ClientError> {
        let e = self.sign(body);
        self.roster.apply(&e).map_err(refused_entry)?;
        self.entries.push(e);
        Ok(())
    }

    fn sign(&self, body: EntryBody) -> LogEntry {
        LogEntry::sign(
            self.state.member_key(),
            self.roster.len(),
            self.roster.head(),
            self.at,
            body,
        )
    }

    /// [`Chain::push`] unless the chain already holds an entry and this one
    /// would take its JSON past `max_bytes` (`used` so far) or its length
    /// past [`MAX_LOG_ENTRIES_PER_FRAME`]: then nothing changes and it
    /// returns false.
    pub fn push_within(
        &mut self,
        body: EntryBody,
        used: &mut usize,
        max_bytes: usize,
    ) -> Result<bool, ClientError> {
        let e = self.sign(body);
        let size = serde_json::to_string(&e)
            .map_err(|err| ClientError::Local(format!("cannot encode a log entry: {err}")))?
            .len()
            + 1;
        let full = self.entries.len() >= MAX_LOG_ENTRIES_PER_FRAME
            || used.saturating_add(size) > max_bytes;
        if !self.entries.is_empty() && full {
            return Ok(false);
        }
        self.roster.apply(&e).map_err(refused_entry)?;
        self.entries.push(e);
        *used = used.saturating_add(size);
        Ok(true)
    }

    /// The entries, as an append without an invite bundle.
    pub fn done(self) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError> {
        Ok((self.entries, None))
    }
}
