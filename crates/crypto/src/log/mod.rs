//! The membership log: an append-only, hash-chained list of signed entries
//! (genesis, role, invite, revoke-invite, admit, remove, unban, rekey,
//! profile) from which every client derives — and verifies — who is in the
//! mesh, with which role and keys, and the current key epoch.
//!
//! `entry` holds the types and their JSON form, `sign` the canonical bytes,
//! hashes and constructors, `roster` the verifier. The rules are specified in
//! `docs/security.md` §7.

mod builder;
mod entry;
mod roster;
mod sign;
#[cfg(test)]
mod tests;

pub use builder::{BuildError, LogBuilder};
pub use entry::*;
pub use roster::{
    Departure, InviteState, LogError, LogFault, MAX_PROFILE_CIPHERTEXT_BYTES, MemberInfo, Roster,
    SealedProfile, verify_log,
};
pub use sign::{PeerType, Profile, ProfileError, SEALED_ROOT_KEY_BYTES, open_root_key, rekey_body};
