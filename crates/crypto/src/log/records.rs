//! The records a [`Roster`](super::Roster) keeps: one per current member
//! ([`MemberInfo`], with its [`SealedProfile`]), one per departed member
//! ([`Departure`]) and one per invite ever authorized ([`InviteState`]).

use crate::boxes::Nonce;
use crate::keys::PublicKey;

use super::entry::{RemoveKind, Role};

/// Largest profile ciphertext accepted in a `profile` entry.
pub const MAX_PROFILE_CIPHERTEXT_BYTES: usize = 4096;

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
