//! Grants (TM7): what each member lets other members do to it.
//!
//! A member (the *recipient*) owns one signed [`GrantSet`]: a map from a
//! sender's member key to the set of capabilities that sender keeps. A sender
//! with no entry has every capability (the default). `block` is an entry with
//! no capability (optionally `silent`), `revoke all` an empty entry that is not
//! silent, `unblock` removes the entry.
//!
//! The set is signed by the recipient's member key, so the broker can enforce
//! it without being trusted to invent it, and the recipient's client checks it
//! again on receipt. Signed bytes (`docs/security.md`, "Grants"):
//! `Transcript("claudemesh/grants/v1")` with fields
//! `mesh ‖ member ‖ version ‖ list(entries)`, each entry
//! `peer ‖ list(caps as strings) ‖ silent (u64 0/1)`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::encoding::{Transcript, label};
use crate::ids::MeshId;
use crate::keys::{PublicKey, Signature, SigningKey};

/// Most entries a grant set may hold (bounds the signed document).
pub const MAX_GRANT_ENTRIES: usize = 4096;

/// A capability one member grants another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cap {
    /// Direct messages.
    Dm,
    /// Broadcasts (`*`).
    Broadcast,
    /// Group messages (`@group`).
    Group,
    /// Topic messages (`#topic`).
    Topic,
    /// Seeing my presence and summary.
    Presence,
    /// Acting on the tasks I created: claiming and completing them
    /// (releasing one it holds stays allowed: that gives it back), and
    /// receiving them in the feed.
    Task,
    /// Receiving the shared-state entries I wrote last.
    State,
    /// Receiving the notes I remembered.
    Memory,
}

impl Cap {
    /// Every capability, in the order of their names.
    pub const ALL: [Cap; 8] = [
        Cap::Broadcast,
        Cap::Dm,
        Cap::Group,
        Cap::Memory,
        Cap::Presence,
        Cap::State,
        Cap::Task,
        Cap::Topic,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Cap::Dm => "dm",
            Cap::Broadcast => "broadcast",
            Cap::Group => "group",
            Cap::Topic => "topic",
            Cap::Presence => "presence",
            Cap::Task => "task",
            Cap::State => "state",
            Cap::Memory => "memory",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Cap> {
        Cap::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The capability a reader needs to receive a coordination object of
    /// `kind` from its author (a task's acts go with their task); `None`
    /// for leases, which every member must see to stay out of their way.
    pub fn for_coord(kind: crate::coord::CoordKind) -> Option<Cap> {
        use crate::coord::CoordKind;
        match kind {
            CoordKind::Task
            | CoordKind::TaskClaim
            | CoordKind::TaskRelease
            | CoordKind::TaskDone => Some(Cap::Task),
            CoordKind::State => Some(Cap::State),
            CoordKind::Memory => Some(Cap::Memory),
            CoordKind::Lease => None,
        }
    }

    /// The capability a message target needs: `*` → broadcast, `@…` → group,
    /// `#…` → topic, anything else (a member or session) → dm.
    pub fn for_target(target: &str) -> Cap {
        if target == "*" {
            Cap::Broadcast
        } else if target.starts_with('@') {
            Cap::Group
        } else if target.starts_with('#') {
            Cap::Topic
        } else {
            Cap::Dm
        }
    }
}

/// What a grant set says about one sender and one capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Deliver.
    Allow,
    /// Refuse, and tell the sender.
    Refuse,
    /// Drop without telling the sender (silent block).
    SilentDrop,
}

/// One sender's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEntry {
    /// The sender's member key.
    pub peer: PublicKey,
    /// Capabilities kept (sorted, known names only, no duplicates).
    pub caps: Vec<String>,
    /// Whether refusals are silent (the sender is not told).
    pub silent: bool,
}

/// A member's signed grant set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantSet {
    /// The mesh the set is valid in.
    pub mesh: MeshId,
    /// The recipient whose grants these are (the signer).
    pub member: PublicKey,
    /// Unix milliseconds; strictly increasing per member.
    pub version: u64,
    /// Entries, sorted by `peer`, one per peer.
    pub entries: Vec<GrantEntry>,
    /// ed25519 signature by `member` over [`GrantSet::signed_bytes`].
    pub sig: Signature,
}

/// Why a grant set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantsError {
    /// The signature does not verify for `member`.
    #[error("grant set signature does not verify")]
    BadSignature,
    /// Signed for another mesh.
    #[error("grant set is for another mesh")]
    WrongMesh,
    /// Entries unsorted or duplicated, unknown or unsorted capabilities, or too many entries.
    #[error("grant set is malformed: {0}")]
    Malformed(&'static str),
}

/// The unsigned content of a grant set: `peer → (caps, silent)`.
pub type GrantMap = std::collections::BTreeMap<PublicKey, (BTreeSet<Cap>, bool)>;

impl GrantSet {
    /// Signs a set for `member` from a map of entries.
    pub fn sign(member: &SigningKey, mesh: MeshId, version: u64, map: &GrantMap) -> Self {
        let entries = map
            .iter()
            .map(|(peer, (caps, silent))| {
                let mut names: Vec<String> = caps.iter().map(|c| c.as_str().to_owned()).collect();
                names.sort();
                GrantEntry {
                    peer: *peer,
                    caps: names,
                    silent: *silent,
                }
            })
            .collect();
        let mut set = GrantSet {
            mesh,
            member: member.public(),
            version,
            entries,
            sig: Signature([0; 64]),
        };
        set.sig = member.sign(&set.signed_bytes());
        set
    }

    /// The canonical bytes the member signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(label::GRANTS);
        t.bytes(self.mesh.as_bytes())
            .bytes(self.member.as_bytes())
            .u64(self.version)
            .list_len(self.entries.len());
        for e in &self.entries {
            t.bytes(e.peer.as_bytes()).list_len(e.caps.len());
            for c in &e.caps {
                t.str(c);
            }
            t.u64(u64::from(e.silent));
        }
        t.into_bytes()
    }

    /// Checks the shape (sorted, known names), the mesh, and the signature.
    pub fn verify(&self, mesh: &MeshId) -> Result<(), GrantsError> {
        if &self.mesh != mesh {
            return Err(GrantsError::WrongMesh);
        }
        if self.entries.len() > MAX_GRANT_ENTRIES {
            return Err(GrantsError::Malformed("too many entries"));
        }
        for pair in self.entries.windows(2) {
            if pair[0].peer >= pair[1].peer {
                return Err(GrantsError::Malformed("entries not sorted by peer"));
            }
        }
        for e in &self.entries {
            for c in &e.caps {
                if Cap::parse(c).is_none() {
                    return Err(GrantsError::Malformed("unknown capability"));
                }
            }
            for pair in e.caps.windows(2) {
                if pair[0] >= pair[1] {
                    return Err(GrantsError::Malformed("capabilities not sorted"));
                }
            }
        }
        self.member
            .verify(&self.signed_bytes(), &self.sig)
            .map_err(|_| GrantsError::BadSignature)
    }

    /// The entries as a map (unknown capability names are skipped).
    pub fn to_map(&self) -> GrantMap {
        self.entries
            .iter()
            .map(|e| {
                let caps = e.caps.iter().filter_map(|c| Cap::parse(c)).collect();
                (e.peer, (caps, e.silent))
            })
            .collect()
    }

    /// The entry for `sender`, if any.
    pub fn entry(&self, sender: &PublicKey) -> Option<&GrantEntry> {
        self.entries
            .binary_search_by(|e| e.peer.cmp(sender))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Whether `sender` may use `cap` towards this set's member.
    pub fn allows(&self, sender: &PublicKey, cap: Cap) -> Decision {
        if sender == &self.member {
            return Decision::Allow;
        }
        match self.entry(sender) {
            None => Decision::Allow,
            Some(e) if e.caps.iter().any(|c| c == cap.as_str()) => Decision::Allow,
            Some(e) if e.silent => Decision::SilentDrop,
            Some(_) => Decision::Refuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Hash32;

    fn mesh() -> MeshId {
        MeshId(Hash32([7; 32]))
    }

    fn map(entries: &[(&SigningKey, &[Cap], bool)]) -> GrantMap {
        entries
            .iter()
            .map(|(k, caps, silent)| (k.public(), (caps.iter().copied().collect(), *silent)))
            .collect()
    }

    #[test]
    fn default_allows_everything() {
        let bob = SigningKey::generate();
        let alice = SigningKey::generate();
        let set = GrantSet::sign(&bob, mesh(), 1, &GrantMap::new());
        set.verify(&mesh()).unwrap();
        for cap in Cap::ALL {
            assert_eq!(set.allows(&alice.public(), cap), Decision::Allow);
        }
    }

    #[test]
    fn block_refuses_and_silent_drops() {
        let bob = SigningKey::generate();
        let alice = SigningKey::generate();
        let carol = SigningKey::generate();
        let dave = SigningKey::generate();
        let m = map(&[
            (&alice, &[], false),
            (&carol, &[], true),
            (&dave, &[Cap::Dm, Cap::Topic], false),
        ]);
        let set = GrantSet::sign(&bob, mesh(), 2, &m);
        set.verify(&mesh()).unwrap();
        assert_eq!(set.allows(&alice.public(), Cap::Dm), Decision::Refuse);
        assert_eq!(set.allows(&carol.public(), Cap::Dm), Decision::SilentDrop);
        assert_eq!(set.allows(&dave.public(), Cap::Dm), Decision::Allow);
        assert_eq!(set.allows(&dave.public(), Cap::Broadcast), Decision::Refuse);
        assert_eq!(set.allows(&bob.public(), Cap::Dm), Decision::Allow);
        assert_eq!(set.to_map(), m);
        let json = serde_json::to_string(&set).unwrap();
        let back: GrantSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        back.verify(&mesh()).unwrap();
    }

    #[test]
    fn tampering_is_caught() {
        let bob = SigningKey::generate();
        let alice = SigningKey::generate();
        let set = GrantSet::sign(&bob, mesh(), 3, &map(&[(&alice, &[], false)]));

        let mut sig = set.clone();
        sig.sig.0[0] ^= 1;
        assert_eq!(sig.verify(&mesh()), Err(GrantsError::BadSignature));

        let mut caps = set.clone();
        caps.entries[0].caps.push("dm".into());
        assert_eq!(caps.verify(&mesh()), Err(GrantsError::BadSignature));

        let mut silent = set.clone();
        silent.entries[0].silent = true;
        assert_eq!(silent.verify(&mesh()), Err(GrantsError::BadSignature));

        let mut version = set.clone();
        version.version += 1;
        assert_eq!(version.verify(&mesh()), Err(GrantsError::BadSignature));

        let forged = GrantSet {
            member: alice.public(),
            ..set.clone()
        };
        assert_eq!(forged.verify(&mesh()), Err(GrantsError::BadSignature));

        assert_eq!(
            set.verify(&MeshId(Hash32([8; 32]))),
            Err(GrantsError::WrongMesh)
        );

        let mut unknown = set.clone();
        unknown.entries[0].caps.push("root".into());
        assert!(matches!(
            unknown.verify(&mesh()),
            Err(GrantsError::Malformed(_))
        ));
    }

    #[test]
    fn signed_bytes_are_exact() {
        let bob = SigningKey::from_seed(&[1; 32]);
        let alice = SigningKey::from_seed(&[2; 32]);
        let set = GrantSet::sign(&bob, mesh(), 5, &map(&[(&alice, &[Cap::Dm], true)]));
        let mut want = Vec::new();
        let field = |w: &mut Vec<u8>, b: &[u8]| {
            w.extend_from_slice(&(b.len() as u32).to_be_bytes());
            w.extend_from_slice(b);
        };
        field(&mut want, b"claudemesh/grants/v1");
        field(&mut want, &[7; 32]);
        field(&mut want, bob.public().as_bytes());
        field(&mut want, &5u64.to_be_bytes());
        field(&mut want, &1u64.to_be_bytes());
        field(&mut want, alice.public().as_bytes());
        field(&mut want, &1u64.to_be_bytes());
        field(&mut want, b"dm");
        field(&mut want, &1u64.to_be_bytes());
        assert_eq!(set.signed_bytes(), want);
    }

    #[test]
    fn targets_map_to_caps() {
        assert_eq!(Cap::for_target("*"), Cap::Broadcast);
        assert_eq!(Cap::for_target("@ops"), Cap::Group);
        assert_eq!(Cap::for_target("#deploys"), Cap::Topic);
        assert_eq!(Cap::for_target("ab12"), Cap::Dm);
        for c in Cap::ALL {
            assert_eq!(Cap::parse(c.as_str()), Some(c));
        }
    }
}
