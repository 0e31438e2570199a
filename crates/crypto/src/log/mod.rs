//! The membership log: an append-only, hash-chained list of signed entries
//! (genesis, role, invite, revoke-invite, admit, remove, unban, rekey,
//! profile, and the topic and group entries) from which every client derives
//! — and verifies — who is in the mesh, with which role and keys, the current
//! key epoch, and who is in which topic and group. The rules are specified
//! in `docs/security.md` §7.
//!
//! - `entry`: the entry types and their JSON form.
//! - `sign`: the canonical signed bytes, entry hashes, key confirmations,
//!   sealed keys and the constructors that sign.
//! - `roster`: the verifier and the [`Roster`] it yields; its `rules` and
//!   `spaces` submodules check each entry kind.
//! - `fault`: why an entry was refused ([`LogError`], [`LogFault`]).
//! - `records`: what the roster keeps per member, departure and invite.
//! - `epochs`: key epochs and their one-by-one opening.
//! - `spaces`: topics and groups as data, and the topic entry bodies.
//! - `builder`: [`LogBuilder`], which writes a valid log step by step.

mod builder;
mod entry;
mod epochs;
mod fault;
mod records;
mod roster;
mod sign;
mod spaces;
#[cfg(test)]
mod tests;

pub use builder::{BuildError, LogBuilder};
pub use entry::*;
pub use epochs::{BadSeal, BadSealReason, KeyEpoch, Seal, SealScope};
pub use fault::{LogError, LogFault};
pub use records::{
    Departure, InviteState, MAX_PROFILE_CIPHERTEXT_BYTES, MemberInfo, SealedProfile,
};
pub use roster::{Roster, verify_log};
pub use sign::{
    ConfirmContext, PeerType, Profile, ProfileError, SEALED_ROOT_KEY_BYTES, key_confirm,
    mesh_key_confirm, open_root_key, open_sealed_key, rekey_body, seal_key_to, topic_key_confirm,
};
pub use spaces::{
    GroupInfo, MAX_GROUP_ROLE_BYTES, MAX_TOPIC_DESCRIPTION_BYTES, Span, TopicInfo, group_is_under,
    topic_create_body, topic_join_body, topic_rekey_body,
};
