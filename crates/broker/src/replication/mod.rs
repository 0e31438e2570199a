//! Several brokers serving the same meshes from one Postgres database. This
//! module owns how replicas keep each other current:
//!
//! - **Wake-ups.** After a batch commits, the writer hands this module ids
//!   only (mesh, message seqs with their recipient keys or fan-out target);
//!   a log append, a grant set or a presence change adds "log grew to N",
//!   "grants of X changed", "sessions of X changed". One notifier task
//!   coalesces whatever accumulated while its previous notification was in
//!   flight into as few `pg_notify` payloads as fit under Postgres' 8000-byte
//!   limit, sent on a connection of its own — never inside the
//!   message-insert transaction — and degrades to "mesh X: recheck" (or
//!   "recheck everything") when that would take too many.
//! - **Listening.** A dedicated `LISTEN` connection feeds a processor task.
//!   Its own notifications are skipped by their broker id. A message for a
//!   recipient connected here is read by seq and pushed exactly like a
//!   local live delivery (busy sessions keep non-urgent ones, draining
//!   sessions pick them up from their drain). A lost connection is followed
//!   by a catch-up: every loaded mesh is rechecked and every session here
//!   drains from the store, since notifications may have been missed.
//! - **Membership logs and grants** are read back from the store and
//!   verified (never adopted unverified), then treated like a local append
//!   (removed members' sessions close, everyone hears `log_update`).
//! - **Presence.** Each broker keeps its sessions in `sessions_online` and
//!   heartbeats its row in `brokers`; a broker whose heartbeat is older than
//!   [`STALE_AFTER`] is dead (a SIGKILL says nothing), and the replica that
//!   notices removes it and its sessions and has every replica recheck
//!   everything: a broker killed between a commit and its notification
//!   leaves accepted messages nobody was woken for.
//!
//! Started only on Postgres ([`crate::store::Store::replicas`]); on SQLite
//! nothing here runs and the hot paths pay one `Option` check.
//!
//! - [`replica`]: [`Replication`], what is queued for the others and read
//!   back from the store.
//! - [`wake`]: the wake-up payload, packed and merged (plain data).
//! - [`loops`]: the notifier, presence writer, heartbeat and listener.
//! - [`inbound`]: acting on what the others said.

pub mod inbound;
pub mod loops;
pub mod replica;
pub mod wake;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use self::inbound::process_loop;
use self::loops::{heartbeat_loop, listen_loop, notify_loop, presence_loop};
pub use self::replica::{HEARTBEAT, Replication, STALE_AFTER};
use self::replica::{lock, stale_ms};
pub use self::wake::{MAX_PAYLOADS, PAYLOAD_BUDGET};
use crate::state::BrokerState;
use crate::store::StoreError;

/// Parsed notifications waiting for the processor.
const INBOX_CAPACITY: usize = 4096;

/// The background tasks of replication; [`ReplicationTasks::stop`] ends them
/// and takes this broker out of `brokers` and `sessions_online`.
#[derive(Debug)]
pub struct ReplicationTasks {
    rep: Arc<Replication>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts replication if the store is shared (Postgres): registers this
/// instance, listens, and starts the notifier, presence writer, heartbeat
/// and processor. Call before serving connections.
pub async fn start(state: &Arc<BrokerState>) -> Result<Option<ReplicationTasks>, StoreError> {
    let Some(store) = state.store.replicas() else {
        return Ok(None);
    };
    let suffix: [u8; 4] = claudemesh_crypto::keys::random_bytes();
    let instance = format!("{}#{}", state.config.broker_id, hex::encode(suffix));
    store.register(&instance).await?;
    let listener = store.listen().await?;
    let peers = store.live_peers(&instance, stale_ms()).await?;
    let own_prefix = format!(
        "{{\"b\":{}",
        serde_json::to_string(&instance).unwrap_or_default()
    );
    let rep = Arc::new(Replication {
        instance,
        own_prefix,
        store,
        outbox: Mutex::new(HashMap::new()),
        outbox_all: AtomicBool::new(false),
        peers: AtomicBool::new(peers > 0),
        outbox_ready: Notify::new(),
        presence: Mutex::new(HashMap::new()),
        presence_ready: Notify::new(),
    });
    state.hub.set_replicas(rep.clone());
    // Others learn of this broker at once (and start waking it).
    rep.announce().await;
    let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
    let tasks = vec![
        tokio::spawn(notify_loop(rep.clone())),
        tokio::spawn(presence_loop(rep.clone())),
        tokio::spawn(heartbeat_loop(state.clone(), rep.clone())),
        tokio::spawn(listen_loop(rep.clone(), listener, tx)),
        tokio::spawn(process_loop(state.clone(), rep.clone(), rx)),
    ];
    tracing::info!(instance = %rep.instance, "replication on: listening for other brokers");
    Ok(Some(ReplicationTasks { rep, tasks }))
}

impl ReplicationTasks {
    /// Stops the tasks, removes this instance and its sessions from the
    /// store, and tells the other replicas (call once every connection here
    /// has closed).
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let rep = self.rep;
        match rep.store.leave(&rep.instance).await {
            Ok(gone) => {
                for (mesh, member) in gone {
                    rep.queue(mesh, |o| {
                        o.presence.insert(member);
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not remove this broker's sessions"),
        }
        let pending = std::mem::take(&mut *lock(&rep.outbox));
        let payloads = rep.round(pending);
        if let Err(e) = rep.store.notifier().send(&payloads).await {
            tracing::warn!(error = %e, "could not tell other brokers this one stopped");
        }
    }
}
