//! Every mesh this broker has loaded ([`Hub`]), loaded and verified from the
//! store on first use, and the replication side it was given at start
//! ([`Replicas`]): what the writer tells other replicas, and what a newly
//! loaded mesh reads back from them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use claudemesh_crypto::log::verify_log;
use claudemesh_crypto::{MeshId, PublicKey};

use crate::mesh::{LoadedMesh, MeshEvents, MeshHub};
use crate::mesh_log::MeshLog;
use crate::store::{Store, StoreError};

/// A message the writer committed, as other replicas need to hear of it.
#[derive(Debug, Clone, Copy)]
pub enum Stored<'a> {
    /// A direct message and its recipient keys (members or sessions).
    Direct {
        /// The mesh.
        mesh: MeshId,
        /// Its seq.
        seq: u64,
        /// Recipient keys.
        recipients: &'a [PublicKey],
    },
    /// A topic, group or broadcast message.
    Fanout {
        /// The mesh.
        mesh: MeshId,
        /// Its seq.
        seq: u64,
        /// The target as on the wire.
        target: &'a str,
    },
}

/// The other replicas, as the hub and the writer reach them (Postgres
/// only): a mesh's own changes go through [`MeshEvents`].
#[async_trait::async_trait]
pub trait Replicas: MeshEvents {
    /// Whether another live broker shares the database (while none does,
    /// [`Replicas::messages_stored`] is a no-op: callers may skip building
    /// its argument).
    fn has_peers(&self) -> bool;
    /// The writer committed these messages.
    fn messages_stored(&self, stored: &[Stored<'_>]);
    /// A mesh was just loaded (and is now visible to wake-ups): read what
    /// changed between its loading reads and now, and the other replicas'
    /// sessions.
    async fn mesh_loaded(&self, mesh: &MeshHub);
}

/// Every mesh this broker has loaded.
pub struct Hub {
    store: Arc<dyn Store>,
    meshes: Mutex<HashMap<MeshId, Arc<MeshHub>>>,
    load_lock: tokio::sync::Mutex<()>,
    /// Set when other brokers may share the database (Postgres).
    replicas: OnceLock<Arc<dyn Replicas>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Hub {
            store,
            meshes: Mutex::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
            replicas: OnceLock::new(),
        }
    }

    /// Turns replication on (once, at start, before any connection).
    pub fn set_replicas(&self, r: Arc<dyn Replicas>) {
        let _ = self.replicas.set(r);
    }

    /// The replication side, when other brokers may share the database.
    pub fn replicas(&self) -> Option<&Arc<dyn Replicas>> {
        self.replicas.get()
    }

    /// Every mesh loaded here.
    pub fn loaded_meshes(&self) -> Vec<Arc<MeshHub>> {
        self.meshes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A mesh if it is loaded here (a replica ignores wake-ups for others:
    /// it reads them fresh when it loads them).
    pub fn loaded(&self, id: &MeshId) -> Option<Arc<MeshHub>> {
        self.meshes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The mesh, loading and verifying its log on first use; `None` if the
    /// broker has no such mesh.
    pub async fn mesh(&self, id: &MeshId) -> Result<Option<Arc<MeshHub>>, StoreError> {
        if let Some(m) = self.loaded(id) {
            return Ok(Some(m));
        }
        let _one_loader = self.load_lock.lock().await;
        if let Some(m) = self.loaded(id) {
            return Ok(Some(m));
        }
        let Some(entries) = self.store.load_log(id).await? else {
            return Ok(None);
        };
        // The broker never trusts its own storage blindly either.
        let roster = verify_log(&entries)
            .map_err(|e| StoreError::Corrupt(format!("stored membership log: {e}")))?;
        let loaded = LoadedMesh {
            log: MeshLog::new(entries, roster),
            member_states: self.store.member_states(id).await?,
            grants: self.store.load_grants(id).await?,
        };
        let events: Option<Arc<dyn MeshEvents>> = match self.replicas() {
            Some(r) => Some(r.clone()),
            None => None,
        };
        let hub = Arc::new(MeshHub::new(*id, loaded, events));
        self.meshes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, hub.clone());
        if let Some(r) = self.replicas() {
            // Visible to wake-ups from here on; whatever changed between the
            // reads above and now is read again.
            r.mesh_loaded(&hub).await;
        }
        Ok(Some(hub))
    }
}
