//! The entries of a kick or ban (pure rules, no I/O): the `remove` and the
//! mesh `rekey` the log requires right after it, then the `topic_rekey`s
//! of the private topics the removed member was in, in bounded batches.

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::log::{EntryBody, LogEntry, RemoveKind, Role, Roster, topic_rekey_body};

use super::chain::{Chain, box_err, forbidden};
use super::rotation::mesh_rekey_body;
use super::state::MeshState;
use crate::error::{ClientError, InvalidRequest};

/// Whether `topic` is a private topic `member` is in that needs a
/// `topic_rekey`.
pub fn topic_rekey_due(roster: &Roster, topic: &str, member: &PublicKey) -> bool {
    roster
        .topic(topic)
        .is_some_and(|t| t.private && t.needs_rekey && t.members.contains_key(member))
}

/// The next append of a removal's topic rotations: a `topic_rekey` of each
/// of `topics`, in order, that still needs one and that this member is in,
/// as many as fit in `max_bytes` of entry JSON and
/// [`MAX_LOG_ENTRIES_PER_FRAME`] entries (always at least one), signed at
/// the current head and checked. Also returns their names; nothing when
/// none is due.
pub fn topic_rekey_batch(
    s: &MeshState,
    topics: &[String],
    max_bytes: usize,
) -> Result<(Vec<LogEntry>, Vec<String>), ClientError> {
    let mine = s.my_key();
    let mut chain = Chain::new(s);
    let mut used = 0;
    let mut names = Vec::new();
    for t in topics {
        if !topic_rekey_due(&chain.roster, t, &mine) {
            continue;
        }
        let body = match chain.roster.topic(t) {
            Some(info) => topic_rekey_body(t, info, &s.mesh_id()).map_err(box_err)?.0,
            None => continue,
        };
        if !chain.push_within(body, &mut used, max_bytes)? {
            break;
        }
        names.push(t.clone());
    }
    Ok((chain.entries, names))
}

/// The entries of a kick or ban by this member, checked: the `remove` and
/// the mesh `rekey` sealed to everyone left, which the log requires right
/// after it. Also returns the private topics the removed member was in
/// that this member is in: each now needs a `topic_rekey`
/// ([`topic_rekey_batch`]), appended after these.
pub fn removal_entries(
    s: &MeshState,
    member: &PublicKey,
    how: RemoveKind,
) -> Result<(Vec<LogEntry>, Vec<String>), ClientError> {
    let mine = s.my_key();
    if *member == mine {
        return Err(ClientError::Invalid(InvalidRequest::RemoveSelf));
    }
    match (s.roster().role_of(&mine), s.roster().role_of(member)) {
        (_, None) => {
            return Err(ClientError::NotFound(format!(
                "{} is not a member of the mesh (any more)",
                s.name_of(member)
            )));
        }
        (_, Some(Role::Owner)) => return Err(forbidden("nobody can remove the mesh's owner")),
        (Some(Role::Admin), Some(Role::Admin)) => {
            return Err(forbidden("only the owner can remove an admin"));
        }
        (Some(Role::Owner | Role::Admin), _) => {}
        _ => return Err(forbidden("only owners and admins can remove members")),
    }
    let mut chain = Chain::new(s);
    chain.push(EntryBody::Remove {
        member: *member,
        how,
    })?;
    let rekey = mesh_rekey_body(&chain.roster)?;
    chain.push(rekey)?;
    let topics: Vec<String> = chain
        .roster
        .topics()
        .iter()
        .filter(|(_, t)| t.private && t.needs_rekey && t.members.contains_key(&mine))
        .map(|(n, _)| n.clone())
        .collect();
    Ok((chain.entries, topics))
}
