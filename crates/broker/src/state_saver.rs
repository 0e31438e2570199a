//! Writes members' last presence (status, peer type, encrypted summary, last
//! seen) to the store through one worker, coalesced per (mesh, member): a
//! member that changes its presence a thousand times a second costs one
//! write per round, not a task and a write each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use claudemesh_crypto::{MeshId, PublicKey};
use tokio::sync::Notify;

use crate::store::{MemberState, Store};

/// The pending writes and the worker's wake-up.
#[derive(Debug, Default)]
pub struct StateSaver {
    pending: Mutex<HashMap<(MeshId, PublicKey), MemberState>>,
    ready: Notify,
}

impl StateSaver {
    /// Queues `member`'s latest state (replacing one not yet written).
    pub fn save(&self, mesh: MeshId, member: PublicKey, state: MemberState) {
        self.lock().insert((mesh, member), state);
        self.ready.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(MeshId, PublicKey), MemberState>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes everything queued so far.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<_> = self.lock().drain().collect();
        for ((mesh, member), state) in batch {
            if let Err(e) = store.save_member_state(&mesh, &member, &state).await {
                tracing::warn!(error = %e, "could not save member state");
            }
        }
    }

    /// The worker: writes whatever is queued, round after round, forever.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            self.ready.notified().await;
            self.flush(store.as_ref()).await;
        }
    }
}
