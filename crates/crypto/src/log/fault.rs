//! Why the verifier refused a log entry: [`LogError`] names the entry,
//! [`LogFault`] the rule it broke, one variant per rule.

use crate::keys::PublicKey;

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

/// A key as faults show it: its first 8 hex digits.
pub(super) fn short(k: &PublicKey) -> String {
    k.to_hex()[..8].to_owned()
}
