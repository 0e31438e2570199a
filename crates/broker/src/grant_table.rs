//! Each member's verified grant set (TM7) as a mesh holds it: who may send
//! it what, and see its presence. No set means everything is allowed. Sets
//! are verified before they are held, whether a client sent them or the
//! store (another replica) holds them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use claudemesh_crypto::grants::{Cap, Decision, GrantSet, GrantsError};
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::ErrorCode;

use crate::store::{Store, StoreError};

/// Why a `grants_set` was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantsSetError {
    /// The set is another member's.
    #[error("the grant set is not this connection's member's")]
    NotYours,
    /// Bad shape, signature or mesh.
    #[error("{0}")]
    Invalid(#[from] GrantsError),
    /// An older version than the stored one.
    #[error("the grant set is older than the stored version {0}")]
    Stale(u64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl GrantsSetError {
    /// The error code a client gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            GrantsSetError::NotYours => ErrorCode::Forbidden,
            GrantsSetError::Invalid(_) | GrantsSetError::Stale(_) => ErrorCode::Malformed,
            GrantsSetError::Store(_) => ErrorCode::Internal,
        }
    }
}

/// The grant sets of one mesh's members.
#[derive(Debug)]
pub struct GrantTable {
    mesh: MeshId,
    sets: RwLock<HashMap<PublicKey, Arc<GrantSet>>>,
}

impl GrantTable {
    /// The table of `mesh`, from stored sets (unverified: those that do not
    /// verify are left out, with a warning).
    pub fn from_stored(mesh: MeshId, stored: Vec<(PublicKey, String)>) -> Self {
        let mut sets = HashMap::new();
        for (member, doc) in stored {
            match verified_grants(&mesh, &member, &doc) {
                Some(set) => {
                    sets.insert(member, Arc::new(set));
                }
                None => tracing::warn!("a stored grant set does not verify; ignoring it"),
            }
        }
        GrantTable {
            mesh,
            sets: RwLock::new(sets),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PublicKey, Arc<GrantSet>>> {
        self.sets.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PublicKey, Arc<GrantSet>>> {
        self.sets.write().unwrap_or_else(|p| p.into_inner())
    }

    /// What `recipient`'s grants say about `sender` using `cap`.
    pub fn decision(&self, recipient: &PublicKey, sender: &PublicKey, cap: Cap) -> Decision {
        match self.read().get(recipient) {
            Some(set) => set.allows(sender, cap),
            None => Decision::Allow,
        }
    }

    /// A number that changes whenever a grant set does: the sum of every
    /// set's version (versions only grow), at least 1 once any set is held
    /// (0 is "no grants" on the wire). Replicas holding the same sets agree.
    pub fn generation(&self) -> u64 {
        let sets = self.read();
        if sets.is_empty() {
            return 0;
        }
        sets.values()
            .fold(0u64, |sum, set| sum.wrapping_add(set.version))
            .max(1)
    }

    /// The members whose grants refuse `sender` `cap` (silently or not).
    pub fn refusing(&self, sender: &PublicKey, cap: Cap) -> Vec<PublicKey> {
        self.read()
            .iter()
            .filter(|(_, set)| set.allows(sender, cap) != Decision::Allow)
            .map(|(member, _)| *member)
            .collect()
    }

    /// Whether `member` refuses `presence` to anyone at all.
    pub fn hides_presence_from_some(&self, member: &PublicKey) -> bool {
        self.read().get(member).is_some_and(|set| {
            set.entries
                .iter()
                .any(|e| !e.caps.iter().any(|c| c == Cap::Presence.as_str()))
        })
    }

    /// Verifies and stores `member`'s new grant set; returns the version the
    /// broker holds afterwards. An equal version is answered as stored.
    pub async fn set(
        &self,
        store: &dyn Store,
        member: &PublicKey,
        set: GrantSet,
    ) -> Result<u64, GrantsSetError> {
        if &set.member != member {
            return Err(GrantsSetError::NotYours);
        }
        set.verify(&self.mesh)?;
        let current = self.read().get(member).map(|g| g.version);
        if let Some(v) = current {
            if set.version == v {
                return Ok(v);
            }
            if set.version < v {
                return Err(GrantsSetError::Stale(v));
            }
        }
        let doc = serde_json::to_string(&set).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let version = set.version;
        if store.save_grants(&self.mesh, member, version, &doc).await? {
            let mut grants = self.write();
            let newer = grants.get(member).is_none_or(|g| g.version < version);
            if newer {
                grants.insert(*member, Arc::new(set));
            }
            Ok(grants.get(member).map_or(version, |g| g.version))
        } else {
            // Another writer (or replica) stored a newer or equal version:
            // take what the store holds.
            let stored = store.load_grants(&self.mesh).await?;
            let mut grants = self.write();
            for (m, doc) in stored {
                if &m == member
                    && let Some(g) = verified_grants(&self.mesh, &m, &doc)
                {
                    grants.insert(m, Arc::new(g));
                }
            }
            match grants.get(member).map(|g| g.version) {
                Some(v) if v == version => Ok(v),
                Some(v) => Err(GrantsSetError::Stale(v)),
                None => Err(GrantsSetError::Store(StoreError::Corrupt(
                    "stored grant set does not verify".into(),
                ))),
            }
        }
    }

    /// Replaces the grant sets of `members` with what the store holds
    /// (`stored`, unverified): a set that verifies and is not older than the
    /// one held is taken; a member with no stored set keeps none.
    pub fn reload(&self, members: &[PublicKey], stored: Vec<(PublicKey, String)>) {
        let mut grants = self.write();
        for member in members {
            let doc = stored.iter().find(|(m, _)| m == member).map(|(_, d)| d);
            match doc.and_then(|d| verified_grants(&self.mesh, member, d)) {
                Some(set) if grants.get(member).is_none_or(|g| g.version <= set.version) => {
                    grants.insert(*member, Arc::new(set));
                }
                Some(_) => {}
                None if doc.is_some() => {
                    tracing::warn!("a stored grant set does not verify; ignoring it");
                }
                None => {}
            }
        }
    }
}

/// A stored grant set, if it parses, verifies, and is `member`'s.
fn verified_grants(mesh: &MeshId, member: &PublicKey, doc: &str) -> Option<GrantSet> {
    let set: GrantSet = serde_json::from_str(doc).ok()?;
    (set.member == *member && set.verify(mesh).is_ok()).then_some(set)
}
