//! A mesh's membership log as the broker holds it: the verified entries and
//! what they verify to ([`MeshLog`]), this broker's own limits on appends
//! ([`AppendLimits`], [`LogQuotas`]: TM10), and why an append is refused
//! ([`AppendError`]).

use std::collections::HashMap;
use std::sync::Mutex;

use claudemesh_crypto::log::{EntryBody, LogEntry, LogFault, Roster};
use claudemesh_crypto::{Hash32, PublicKey};
use claudemesh_proto::ErrorCode;

use crate::ratelimit::TokenBucket;
use crate::store::StoreError;

/// The verified membership log of a mesh.
#[derive(Debug, Clone)]
pub struct MeshLog {
    /// Every entry, in order.
    pub entries: Vec<LogEntry>,
    /// What they verify to.
    pub roster: Roster,
    /// Bytes of the entries' JSON (the size cap counts these).
    pub bytes: usize,
}

impl MeshLog {
    /// A verified log and its size.
    pub fn new(entries: Vec<LogEntry>, roster: Roster) -> Self {
        let bytes = entries.iter().map(entry_bytes).sum();
        MeshLog {
            entries,
            roster,
            bytes,
        }
    }

    /// Adds verified entries.
    pub fn extend(&mut self, entries: &[LogEntry], roster: Roster) {
        self.bytes += entries.iter().map(entry_bytes).sum::<usize>();
        self.entries.extend(entries.iter().cloned());
        self.roster = roster;
    }
}

/// The largest entry a broker appends: one it can still serve alone in a
/// `log_entries` frame (the frame's other fields take the rest). A rekey of
/// about 600 members is the largest legitimate entry.
pub const MAX_ENTRY_BYTES: usize = claudemesh_proto::limits::MAX_FRAME_BYTES - 4096;

/// Bytes of an entry's JSON.
pub fn entry_bytes(e: &LogEntry) -> usize {
    serde_json::to_string(e).map_or(0, |j| j.len())
}

/// This broker's own limits on what appends may add to a log (TM10). They
/// are not rules of the log — clients do not check them — only of what
/// this broker agrees to store and serve.
#[derive(Debug, Clone, Copy)]
pub struct AppendLimits {
    /// Entries one author may append per hour, sustained.
    pub entries_per_hour: u32,
    /// Entries one author may append at once.
    pub burst: u32,
    /// Bytes of entries one author may append per hour (and at once).
    pub bytes_per_hour: u32,
    /// Largest log (JSON bytes); above it only entries that remove someone
    /// or rotate a key are taken, so a mesh can always defend itself.
    pub max_log_bytes: usize,
    /// The broker's clock, unix seconds: an `admit` of an expired invite is
    /// refused whatever date its joiner wrote in it.
    pub now_secs: u64,
}

impl AppendLimits {
    /// No quota, no size cap, no clock (entries another replica appended
    /// and this broker only adopts).
    pub const NONE: AppendLimits = AppendLimits {
        entries_per_hour: u32::MAX,
        burst: u32::MAX,
        bytes_per_hour: u32::MAX,
        max_log_bytes: usize::MAX,
        now_secs: 0,
    };
}

/// An owner's or admin's entry that takes someone out, revokes or rotates a
/// key: never counted against quotas and taken even by a full log, so the
/// mesh can always remove whoever fills it. (The same kinds by a plain
/// member are counted and refused like any other entry: any member may
/// rotate a private topic's key, and each rotation is as big as the topic.)
pub fn admin_safeguard(roster: &Roster, e: &LogEntry) -> bool {
    let admin = matches!(
        roster.role_of(&e.author),
        Some(claudemesh_crypto::log::Role::Owner | claudemesh_crypto::log::Role::Admin)
    );
    admin
        && matches!(
            e.body,
            EntryBody::Remove { .. }
                | EntryBody::Rekey { .. }
                | EntryBody::RevokeInvite { .. }
                | EntryBody::Role { .. }
                | EntryBody::TopicLeave { .. }
                | EntryBody::TopicRekey { .. }
                | EntryBody::GroupLeave { .. }
        )
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log moved on (or the first entry is not at its end).
    #[error("the log is at {len} entries (head {head}); fetch, verify and retry")]
    Conflict {
        /// Current length.
        len: u64,
        /// Current head.
        head: Hash32,
    },
    /// An entry does not verify.
    #[error("{0}")]
    Invalid(claudemesh_crypto::log::LogError),
    /// The request carried no entries or too many.
    #[error("{0}")]
    Malformed(&'static str),
    /// The author appended more entries than this broker takes per hour.
    #[error(
        "this member appended too many membership-log entries; retry in {} s",
        retry_after_ms.div_ceil(1000)
    )]
    RateLimited {
        /// When the entries would be taken.
        retry_after_ms: u64,
    },
    /// The log reached this broker's size cap.
    #[error(
        "this mesh's membership log reached the broker's limit of {max_bytes} bytes; it now \
         takes only removals and key rotations"
    )]
    LogFull {
        /// The cap.
        max_bytes: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppendError {
    /// The error code a client gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppendError::Conflict { .. } => ErrorCode::LogConflict,
            AppendError::Invalid(e) => match e.fault {
                LogFault::InviteExhausted { .. } => ErrorCode::InviteExhausted,
                LogFault::InviteRevoked { .. } => ErrorCode::InviteRevoked,
                LogFault::InviteExpired(_) => ErrorCode::InviteExpired,
                LogFault::UnknownInvite(_) => ErrorCode::InviteNotFound,
                _ => ErrorCode::LogInvalid,
            },
            AppendError::Malformed(_) => ErrorCode::Malformed,
            AppendError::RateLimited { .. } => ErrorCode::RateLimited,
            AppendError::LogFull { .. } => ErrorCode::Forbidden,
            AppendError::Store(_) => ErrorCode::Internal,
        }
    }

    /// How long to wait before retrying, when that is known.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            AppendError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }
}

/// Each author's buckets of membership-log entries and bytes (TM10).
#[derive(Debug, Default)]
pub struct LogQuotas {
    rates: Mutex<HashMap<PublicKey, (TokenBucket, TokenBucket)>>,
}

impl LogQuotas {
    /// Counts each author's entries and their bytes against its hourly
    /// quotas (a batch larger than a burst needs a full bucket). An owner's
    /// or admin's removals and rotations (`safeguards`) are not counted:
    /// nothing a member does may leave an owner unable to remove it (a kick
    /// of a member in many private topics is a rekey of each of them).
    pub fn take(
        &self,
        entries: &[LogEntry],
        safeguards: &[bool],
        limits: &AppendLimits,
    ) -> Result<(), AppendError> {
        if limits.entries_per_hour == u32::MAX {
            return Ok(());
        }
        let mut per_author: HashMap<PublicKey, (u32, u64)> = HashMap::new();
        for (e, safeguard) in entries.iter().zip(safeguards) {
            if *safeguard {
                continue;
            }
            let n = per_author.entry(e.author).or_default();
            n.0 += 1;
            n.1 += entry_bytes(e) as u64;
        }
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        // All checked before any is taken: a refused batch costs nothing.
        let mut charges = Vec::with_capacity(per_author.len());
        for (author, (count, bytes)) in per_author {
            let buckets = rates.entry(author).or_insert_with(|| {
                (
                    TokenBucket::per_hour(limits.entries_per_hour, limits.burst),
                    TokenBucket::per_hour(limits.bytes_per_hour, limits.bytes_per_hour),
                )
            });
            let count = count.min(limits.burst);
            let bytes = u32::try_from(bytes)
                .unwrap_or(u32::MAX)
                .min(limits.bytes_per_hour);
            let mut probe = buckets.clone();
            probe
                .0
                .take_n(count)
                .and(probe.1.take_n(bytes))
                .map_err(|retry_after_ms| AppendError::RateLimited { retry_after_ms })?;
            charges.push((author, probe));
        }
        for (author, charged) in charges {
            rates.insert(author, charged);
        }
        Ok(())
    }
}
