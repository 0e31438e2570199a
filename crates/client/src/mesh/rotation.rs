//! Which keys must rotate, and who may write them (pure rules over the
//! verified state, no I/O): the key a fan-out message needs before it is
//! sealed ([`rotation_needed`]), the keys this member should rotate on its
//! own ([`repairs_needed`]: a kick or ban some admin left without its
//! rekey, a key this member is owed, a key sealed to it that does not
//! open), and the entry that performs a rotation.

use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::log::{
    EntryBody, LogEntry, Roster, SealScope, rekey_body, topic_rekey_body,
};
use claudemesh_crypto::{EpochRootKey, PublicKey};
use claudemesh_proto::ErrorCode;

use super::chain::box_err;
use super::state::MeshState;
use crate::error::ClientError;

// Key rotation before a fan-out send

/// A key that must rotate before a fan-out message is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// A mesh `rekey` (a member left or was removed, and no rekey followed).
    Mesh,
    /// A `topic_rekey` of this private topic (a member left it).
    Topic(String),
}

/// A kick or ban whose rekey has not been written yet (the log requires it
/// as the very next entry, by the owner or any admin): (remover, removed).
pub fn pending_removal(state: &MeshState) -> Option<(PublicKey, PublicKey)> {
    let seq = state.roster().pending_removal()?;
    let e = state.entries().get(usize::try_from(seq).ok()?)?;
    match &e.body {
        EntryBody::Remove { member, .. } => Some((e.author, *member)),
        _ => None,
    }
}

/// Whether the log lets this member write a mesh `rekey` now.
pub fn may_rekey(state: &MeshState) -> bool {
    state.roster().may_rekey(&state.my_key())
}

/// Why this member cannot write the mesh key it needs, as a
/// `rekey_required` refusal that says who can.
fn rekey_refusal(state: &MeshState) -> ClientError {
    let message = if let Some((admin, removed)) = pending_removal(state) {
        format!(
            "{} removed {} and has not written the new mesh key yet; an owner or admin must write it (`claudemesh mesh rekey`)",
            state.name_of(&admin),
            state.name_of(&removed)
        )
    } else if let Some(b) = state.bad_seals().iter().find(|b| {
        b.seal.scope
            == SealScope::Mesh {
                epoch: state.roster().epoch(),
            }
    }) {
        format!(
            "the mesh key of epoch {} that {} ({}) sealed to you does not open or does not match its confirmation, and only an owner or admin may write a new one now: ask one to run `claudemesh mesh rekey`",
            state.roster().epoch(),
            state.name_of(&b.seal.author),
            crate::mesh::short(&b.seal.author)
        )
    } else {
        format!(
            "this device does not hold the mesh key of the current epoch ({}), and only an owner or admin may write a new one now: ask one to run `claudemesh mesh rekey`",
            state.roster().epoch()
        )
    };
    ClientError::Refused {
        code: ErrorCode::RekeyRequired,
        message,
    }
}

/// Whether the mesh key must rotate before this member seals to the whole
/// mesh: `Some(Mesh)` when it must and this member may write it; an error
/// (`rekey_required`, saying who can) when it must and this member may not.
fn mesh_rotation(state: &MeshState) -> Result<Option<Rotation>, ClientError> {
    if !state.roster().needs_rekey() && !state.lacks_current_root() {
        return Ok(None);
    }
    if may_rekey(state) {
        Ok(Some(Rotation::Mesh))
    } else {
        Err(rekey_refusal(state))
    }
}

/// Which key, if any, must rotate before this member seals a message to
/// `target`: the mesh's (for `*`, `@group` and public topics) when the
/// roster needs a rekey or this device lacks the current root key (its
/// seal was bad), or a private topic's when it needs a `topic_rekey` or
/// this member's seal of its current key was bad. An error when the
/// rotation is not this member's to write (a kick or ban some admin left
/// pending, seen by a plain member). Direct targets never need one.
pub fn rotation_needed(
    state: &MeshState,
    target: &Target,
) -> Result<Option<Rotation>, ClientError> {
    let roster = state.roster();
    match target {
        Target::Member(_) | Target::Session(_) => Ok(None),
        Target::Broadcast | Target::Group(_) => mesh_rotation(state),
        Target::Topic(t) => {
            let info = roster.topic(t).ok_or_else(|| state.no_such_topic(t))?;
            if !info.private {
                return mesh_rotation(state);
            }
            // A non-member cannot rotate it (sealing then says why).
            let mine = info.members.contains_key(&state.my_key());
            let due = info.needs_rekey || state.lacks_topic_key(t);
            Ok((mine && due).then(|| Rotation::Topic(t.clone())))
        }
    }
}

/// The keys this member should rotate on its own, now, without waiting
/// for a message to send: the mesh key when an admin's kick or ban waits
/// for its rekey and this member is the owner or an admin, or when this
/// device lacks the current root key (a joiner owed it, or a seal that was
/// bad) and the log lets it write one; and each private topic it is in
/// whose current key it could not open. A leave is left to the next
/// member who sends to the whole mesh.
pub fn repairs_needed(state: &MeshState) -> Vec<Rotation> {
    let roster = state.roster();
    let mut out = Vec::new();
    let removal = roster.pending_removal().is_some();
    if (removal || state.lacks_current_root()) && may_rekey(state) {
        out.push(Rotation::Mesh);
    }
    if removal {
        // Nothing else may be appended before that rekey.
        return out;
    }
    for (name, info) in roster.topics() {
        if info.private && state.lacks_topic_key(name) {
            out.push(Rotation::Topic(name.clone()));
        }
    }
    out
}

/// The signed entry that performs a rotation, as the next entry of the log.
pub fn rotation_entry(state: &MeshState, r: &Rotation, at: u64) -> Result<LogEntry, ClientError> {
    let roster = state.roster();
    let body = match r {
        Rotation::Mesh => mesh_rekey_body(roster)?,
        Rotation::Topic(t) => {
            let info = roster.topic(t).ok_or_else(|| state.no_such_topic(t))?;
            topic_rekey_body(t, info, &roster.mesh_id())
                .map_err(box_err)?
                .0
        }
    };
    Ok(LogEntry::sign(
        state.member_key(),
        roster.len(),
        roster.head(),
        at,
        body,
    ))
}

/// A `rekey` to the next epoch: a fresh root key sealed to exactly the
/// current members (never to an invite key: a joiner whose invite is older
/// than the epoch is owed the key by the next rekey, which it writes
/// itself), with its key confirmation.
pub fn mesh_rekey_body(roster: &Roster) -> Result<EntryBody, ClientError> {
    let root = EpochRootKey::generate(roster.epoch() + 1);
    let recipients: Vec<PublicKey> = roster.members().keys().copied().collect();
    rekey_body(&root, &roster.mesh_id(), &recipients).map_err(box_err)
}
