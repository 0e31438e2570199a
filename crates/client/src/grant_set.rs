//! The signed grant set (TM7): its file (`meshes/<id>/grants.json`, 0600),
//! a change to it, its entries for display, and the check on receipt
//! ([`allows`]). No I/O beyond that file.

use std::collections::BTreeSet;

use claudemesh_crypto::grants::{Cap, Decision, GrantMap, GrantSet};
use claudemesh_crypto::{MeshId, PublicKey};
use serde::Serialize;

use crate::error::{BadInput, ClientError};
use crate::home::{Home, write_private_file};
use crate::mesh::MeshState;
use claudemesh_proto::clock::now_ms;

/// The file, inside the mesh's directory.
pub const GRANTS_FILE: &str = "grants.json";

/// What a rejected message is recorded with.
pub const BLOCKED_REASON: &str = "blocked by your grants";

/// One change to the grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantChange {
    /// Add capabilities (to the entry, or to the default set when none).
    Grant(Vec<Cap>),
    /// Remove capabilities.
    Revoke(Vec<Cap>),
    /// Remove every capability (not silent).
    RevokeAll,
    /// No capability at all; `silent`: the sender is not told.
    Block {
        /// Refusals are not reported to the sender.
        silent: bool,
    },
    /// Back to the default (every capability).
    Unblock,
}

/// One entry, as `claudemesh grants` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantView {
    /// The peer's member key (hex).
    pub peer: String,
    /// Its display name.
    pub name: String,
    /// Capabilities it keeps.
    pub caps: Vec<String>,
    /// It keeps none.
    pub blocked: bool,
    /// Refusals are silent.
    pub silent: bool,
}

/// Parses capability names (`dm`, `broadcast`, `group`, `topic`, `presence`,
/// `task`, `state`, `memory`).
pub fn parse_caps(names: &[String]) -> Result<Vec<Cap>, ClientError> {
    names
        .iter()
        .map(|n| {
            Cap::parse(&n.to_ascii_lowercase())
                .ok_or_else(|| ClientError::BadInput(BadInput::Capability { name: n.clone() }))
        })
        .collect()
}

/// Applies a change to `peer`'s entry.
pub fn apply(map: &mut GrantMap, peer: PublicKey, change: &GrantChange) {
    let all: BTreeSet<Cap> = Cap::ALL.into_iter().collect();
    match change {
        GrantChange::Grant(caps) => {
            let entry = map.entry(peer).or_insert_with(|| (all.clone(), false));
            entry.0.extend(caps.iter().copied());
            if entry.0 == all {
                map.remove(&peer);
            }
        }
        GrantChange::Revoke(caps) => {
            let entry = map.entry(peer).or_insert_with(|| (all, false));
            for c in caps {
                entry.0.remove(c);
            }
        }
        GrantChange::RevokeAll => {
            map.insert(peer, (BTreeSet::new(), false));
        }
        GrantChange::Block { silent } => {
            map.insert(peer, (BTreeSet::new(), *silent));
        }
        GrantChange::Unblock => {
            map.remove(&peer);
        }
    }
}

/// Reads this member's grant set for a mesh (none when there is no file).
/// A file that does not verify for this member is an error, never ignored.
pub fn load(
    home: &Home,
    mesh: &MeshId,
    member: &PublicKey,
) -> Result<Option<GrantSet>, ClientError> {
    let path = home.mesh_file(mesh, GRANTS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ClientError::Local(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let set: GrantSet = serde_json::from_slice(&bytes).map_err(|e| {
        ClientError::Local(format!(
            "{} is damaged ({e}); delete it to go back to default grants",
            path.display()
        ))
    })?;
    if &set.member != member {
        return Err(ClientError::Local(format!(
            "{} belongs to another member key",
            path.display()
        )));
    }
    set.verify(mesh).map_err(|e| {
        ClientError::Local(format!(
            "{} does not verify ({e}); delete it to go back to default grants",
            path.display()
        ))
    })?;
    Ok(Some(set))
}

/// Writes the grant set (0600).
pub fn save(home: &Home, set: &GrantSet) -> Result<(), ClientError> {
    let path = home.mesh_file(&set.mesh, GRANTS_FILE);
    let json = serde_json::to_vec_pretty(set)
        .map_err(|e| ClientError::Local(format!("cannot encode grants: {e}")))?;
    write_private_file(&path, &json)
}

/// Signs a new version of the grants with `change` applied to `peer`, saves
/// it, and returns it (the caller pushes it to the broker).
pub fn change_local(
    home: &Home,
    state: &MeshState,
    peer: PublicKey,
    change: &GrantChange,
) -> Result<GrantSet, ClientError> {
    let mesh = state.roster().mesh_id();
    let key = state.member_key();
    if peer == key.public() {
        return Err(ClientError::GrantsForSelf);
    }
    let current = load(home, &mesh, &key.public())?;
    let mut map = current.as_ref().map(GrantSet::to_map).unwrap_or_default();
    apply(&mut map, peer, change);
    let version = match &current {
        Some(c) => now_ms().max(c.version.saturating_add(1)),
        None => now_ms(),
    };
    let set = GrantSet::sign(key, mesh, version, &map);
    save(home, &set)?;
    Ok(set)
}

/// Every entry, for display.
pub fn list(state: &MeshState, set: Option<&GrantSet>) -> Vec<GrantView> {
    let Some(set) = set else {
        return Vec::new();
    };
    set.entries
        .iter()
        .map(|e| GrantView {
            peer: e.peer.to_hex(),
            name: state.display_name(&e.peer),
            caps: e.caps.clone(),
            blocked: e.caps.is_empty(),
            silent: e.silent,
        })
        .collect()
}

/// Whether this member's grants let `sender` send a message to `target`
/// (the client-side re-check).
pub fn allows(set: Option<&GrantSet>, sender: &PublicKey, target: &str) -> bool {
    match set {
        None => true,
        Some(set) => set.allows(sender, Cap::for_target(target)) == Decision::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::SigningKey;

    #[test]
    fn changes_follow_the_decided_semantics() {
        let peer = SigningKey::generate().public();
        let mut map = GrantMap::new();
        apply(&mut map, peer, &GrantChange::Revoke(vec![Cap::Broadcast]));
        let (caps, silent) = &map[&peer];
        assert_eq!(caps.len(), Cap::ALL.len() - 1);
        assert!(!caps.contains(&Cap::Broadcast));
        assert!(!silent);
        apply(&mut map, peer, &GrantChange::Grant(vec![Cap::Broadcast]));
        assert!(
            map.is_empty(),
            "every capability back is the default: no entry"
        );
        apply(&mut map, peer, &GrantChange::Block { silent: true });
        assert_eq!(map[&peer], (BTreeSet::new(), true));
        apply(&mut map, peer, &GrantChange::Grant(vec![Cap::Dm]));
        assert_eq!(map[&peer], ([Cap::Dm].into_iter().collect(), true));
        apply(&mut map, peer, &GrantChange::RevokeAll);
        assert_eq!(map[&peer], (BTreeSet::new(), false));
        apply(&mut map, peer, &GrantChange::Unblock);
        assert!(map.is_empty());
    }

    #[test]
    fn caps_parse_or_name_the_bad_one() {
        assert_eq!(
            parse_caps(&["DM".into(), "topic".into()]).unwrap(),
            vec![Cap::Dm, Cap::Topic]
        );
        let err = parse_caps(&["root".into()]).unwrap_err().to_string();
        assert!(err.contains("root"), "{err}");
    }
}
