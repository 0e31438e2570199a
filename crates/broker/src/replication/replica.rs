//! This broker's side of replication ([`Replication`]): what a mesh's
//! state changes and the writer tell the others (queued here for the
//! notifier and presence tasks), and reading their changes back from the
//! store (log entries verified, grant sets, their sessions).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudemesh_crypto::coord::CoordKind;
use claudemesh_crypto::log::LogEntry;
use claudemesh_crypto::{MeshId, PublicKey};
use tokio::sync::Notify;

use super::wake::{MeshOut, Wake, pack, to_json};
use crate::hub::{Replicas, Stored};
use crate::mesh::{MeshEvents, MeshHub};
use crate::sessions::SessionHandle;
use crate::store::StoreError;
use crate::store::replicas::{OnlineSession, PresenceWrite, ReplicaStore, SessionEnd};

/// How often a broker moves its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A broker whose heartbeat is older than this is dead.
pub const STALE_AFTER: Duration = Duration::from_secs(6);

/// [`STALE_AFTER`] in milliseconds.
pub(super) fn stale_ms() -> u64 {
    u64::try_from(STALE_AFTER.as_millis()).unwrap_or(u64::MAX)
}

/// This broker's side of replication: what the writer and each mesh's
/// state changes tell the others, and the store it reads them back from.
#[derive(Debug)]
pub struct Replication {
    pub(super) instance: String,
    /// `{"b":"<instance>"`: the start of this broker's own payloads.
    pub(super) own_prefix: String,
    pub(super) store: Arc<dyn ReplicaStore>,
    pub(super) outbox: Mutex<HashMap<MeshId, MeshOut>>,
    /// The next round tells everyone to recheck everything.
    pub(super) outbox_all: AtomicBool,
    /// Whether another live broker shares the database. While none does,
    /// nothing is notified (a single broker pays nothing per message); the
    /// moment one appears, everyone is told to recheck everything, which
    /// covers what was committed before this broker knew.
    pub(super) peers: AtomicBool,
    pub(super) outbox_ready: Notify,
    pub(super) presence: Mutex<HashMap<(MeshId, PublicKey), (PublicKey, PresenceWrite)>>,
    pub(super) presence_ready: Notify,
}

pub(super) use claudemesh_proto::sync::lock;

impl Replication {
    /// This broker instance's id (its configured id and a random suffix, so
    /// a restarted broker is a new instance).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub(super) fn queue(&self, mesh: MeshId, f: impl FnOnce(&mut MeshOut)) {
        f(lock(&self.outbox).entry(mesh).or_default());
        self.outbox_ready.notify_one();
    }

    /// Whether another live broker shares the database (while none does,
    /// [`Replication::messages_stored`] is a no-op: callers may skip
    /// building its argument).
    pub fn has_peers(&self) -> bool {
        self.peers.load(Ordering::SeqCst)
    }

    /// The writer committed these messages.
    pub fn messages_stored(&self, stored: &[Stored<'_>]) {
        // Checked after the commit: see `peers_seen` for why a message
        // committed just before another broker appeared is not lost.
        if stored.is_empty() || !self.peers.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut out = lock(&self.outbox);
            for s in stored {
                match *s {
                    Stored::Direct {
                        mesh,
                        seq,
                        recipients,
                    } => {
                        if !recipients.is_empty() {
                            let o = out.entry(mesh).or_default();
                            o.direct.push((seq, recipients.to_vec()));
                        }
                    }
                    Stored::Fanout { mesh, seq, target } => {
                        let o = out.entry(mesh).or_default();
                        o.fanout.push((seq, target.to_owned()));
                    }
                }
            }
        }
        self.outbox_ready.notify_one();
    }

    /// This broker appended to a mesh's log; it is now `len` entries long.
    pub fn log_grew(&self, mesh: MeshId, len: u64) {
        self.queue(mesh, |o| o.log_len = o.log_len.max(Some(len)));
    }

    /// A member's grant set changed here.
    pub fn grants_changed(&self, mesh: MeshId, member: PublicKey) {
        self.queue(mesh, |o| {
            o.grants.insert(member);
        });
    }

    fn presence_write(
        &self,
        mesh: MeshId,
        member: PublicKey,
        session: PublicKey,
        w: PresenceWrite,
    ) {
        let mut q = lock(&self.presence);
        let key = (mesh, session);
        let merged = match (q.remove(&key), w) {
            // A change to the connection that is (still) being written as
            // new stays a new row, with the latest presence.
            (
                Some((
                    _,
                    PresenceWrite::Up {
                        row: old,
                        fresh: true,
                    },
                )),
                PresenceWrite::Up { row, fresh: false },
            ) if old.conn_id == row.conn_id => PresenceWrite::Up { row, fresh: true },
            // A replaced connection's late change or close does not touch
            // the row of the connection that replaced it.
            (
                Some((_, PresenceWrite::Up { row: old, fresh })),
                PresenceWrite::Up { row, fresh: false },
            ) if old.conn_id != row.conn_id => PresenceWrite::Up { row: old, fresh },
            (Some((_, PresenceWrite::Up { row: old, fresh })), PresenceWrite::Down(end))
                if old.conn_id != end.conn_id =>
            {
                PresenceWrite::Up { row: old, fresh }
            }
            (_, w) => w,
        };
        q.insert(key, (member, merged));
        drop(q);
        self.presence_ready.notify_one();
    }

    fn row_of(&self, s: &SessionHandle) -> OnlineSession {
        let p = s.presence();
        OnlineSession {
            mesh: s.mesh,
            session: s.session,
            member: s.member,
            broker: self.instance.clone(),
            conn_id: s.conn_id,
            cert: s.cert.clone(),
            status: p.status,
            peer_type: p.peer_type,
            summary: p.summary,
            connected_at_ms: s.connected_at_ms,
            updated_at_ms: crate::now_ms(),
        }
    }

    /// A session said hello here.
    pub fn session_up(&self, s: &SessionHandle) {
        let row = Box::new(self.row_of(s));
        self.presence_write(
            s.mesh,
            s.member,
            s.session,
            PresenceWrite::Up { row, fresh: true },
        );
    }

    /// A session here changed its presence.
    pub fn session_changed(&self, s: &SessionHandle) {
        let row = Box::new(self.row_of(s));
        self.presence_write(
            s.mesh,
            s.member,
            s.session,
            PresenceWrite::Up { row, fresh: false },
        );
    }

    /// A session's connection here ended.
    pub fn session_down(&self, s: &SessionHandle) {
        self.presence_write(
            s.mesh,
            s.member,
            s.session,
            PresenceWrite::Down(Box::new(SessionEnd {
                mesh: s.mesh,
                session: s.session,
                conn_id: s.conn_id,
            })),
        );
    }

    /// Whether another live broker shares the database (from a heartbeat's
    /// count, or any notification from another instance). When one
    /// appears, the flag is set first and everyone is then told to recheck
    /// everything: a message committed while this broker thought it was
    /// alone was either committed before that recheck is sent (and the
    /// recheck's drains find it) or sees the flag and is notified.
    pub(super) fn peers_seen(&self, alive: bool) {
        let was = self.peers.swap(alive, Ordering::SeqCst);
        if alive && !was {
            tracing::info!("another broker shares the database; waking it from now on");
            self.outbox_all.store(true, Ordering::SeqCst);
            self.outbox_ready.notify_one();
        }
    }

    /// Tells the other brokers (if any listen) that this one is here.
    pub(super) async fn announce(&self) {
        let hello = to_json(&Wake {
            b: self.instance.clone(),
            ..Wake::default()
        });
        if let Err(e) = self.store.notifier().send(&[hello]).await {
            tracing::warn!(error = %e, "could not announce this broker to the others");
        }
    }

    /// The payloads of one round: what accumulated, or "recheck
    /// everything" when that was asked for; nothing while no other broker
    /// is there to hear it.
    pub(super) fn round(&self, out: HashMap<MeshId, MeshOut>) -> Vec<String> {
        if !self.peers.load(Ordering::SeqCst) {
            return Vec::new();
        }
        if self.outbox_all.swap(false, Ordering::SeqCst) {
            return vec![to_json(&Wake {
                b: self.instance.clone(),
                all: true,
                m: Vec::new(),
            })];
        }
        if out.is_empty() {
            return Vec::new();
        }
        pack(&self.instance, out)
    }

    /// A mesh was just loaded (and is now visible to wake-ups): read what
    /// changed between its loading reads and now, and the other replicas'
    /// sessions.
    pub async fn mesh_loaded(&self, mesh: &MeshHub) {
        if let Err(e) = self.refresh_mesh(mesh).await {
            tracing::warn!(error = %e, "could not read other replicas' state of a mesh");
        }
    }

    /// Adopts log entries other replicas appended (verified first). Returns
    /// whether the log grew.
    pub async fn catch_up_log(&self, mesh: &MeshHub) -> bool {
        mesh.adopt_appended(|from| self.store.log_from(&mesh.id, from))
            .await
    }

    /// Re-reads the mesh's log tail, every grant set and the other
    /// replicas' sessions.
    pub(super) async fn refresh_mesh(&self, mesh: &MeshHub) -> Result<(), StoreError> {
        self.catch_up_log(mesh).await;
        let members: Vec<PublicKey> =
            mesh.read_log(|l| l.roster.members().keys().copied().collect());
        let stored = self.store.grants_of(&mesh.id, &members).await?;
        mesh.reload_grants(&members, stored);
        self.refresh_presence(mesh, None).await
    }

    pub(super) async fn refresh_presence(
        &self,
        mesh: &MeshHub,
        members: Option<&[PublicKey]>,
    ) -> Result<(), StoreError> {
        let _in_order = mesh.presence_sync().await;
        let rows = self
            .store
            .online_sessions(&mesh.id, members, &self.instance, stale_ms())
            .await?;
        mesh.apply_remote(members, rows);
        Ok(())
    }
}

#[async_trait::async_trait]
impl MeshEvents for Replication {
    fn session_up(&self, session: &SessionHandle) {
        Replication::session_up(self, session);
    }

    fn session_changed(&self, session: &SessionHandle) {
        Replication::session_changed(self, session);
    }

    fn session_down(&self, session: &SessionHandle) {
        Replication::session_down(self, session);
    }

    fn log_grew(&self, mesh: MeshId, len: u64) {
        Replication::log_grew(self, mesh, len);
    }

    fn coord_changed(&self, mesh: MeshId, kind: CoordKind) {
        self.queue(mesh, |o| {
            o.coord.insert(kind);
        });
    }

    fn grants_changed(&self, mesh: MeshId, member: PublicKey) {
        Replication::grants_changed(self, mesh, member);
    }

    async fn log_from(&self, mesh: &MeshId, from: u64) -> Result<Vec<LogEntry>, StoreError> {
        self.store.log_from(mesh, from).await
    }
}

#[async_trait::async_trait]
impl Replicas for Replication {
    fn has_peers(&self) -> bool {
        Replication::has_peers(self)
    }

    fn messages_stored(&self, stored: &[Stored<'_>]) {
        Replication::messages_stored(self, stored);
    }

    async fn mesh_loaded(&self, mesh: &MeshHub) {
        Replication::mesh_loaded(self, mesh).await;
    }
}
