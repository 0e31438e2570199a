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

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::{Hash32, PublicKey};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::hub::{MeshHub, SessionHandle, deliver_text};
use crate::metrics as m;
use crate::route;
use crate::server::BrokerState;
use crate::store::StoreError;
use crate::store::replicas::{OnlineSession, PgReplicaStore, PresenceWrite, SessionEnd};

/// How often a broker moves its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A broker whose heartbeat is older than this is dead.
pub const STALE_AFTER: Duration = Duration::from_secs(6);
/// Largest notification payload built (Postgres refuses 8000 bytes).
pub const PAYLOAD_BUDGET: usize = 7_600;
/// More payloads than this in one round degrade to "recheck".
pub const MAX_PAYLOADS: usize = 16;
/// Longest wait between retries of a failed database step.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Parsed notifications waiting for the processor.
const INBOX_CAPACITY: usize = 4096;

fn stale_ms() -> u64 {
    u64::try_from(STALE_AFTER.as_millis()).unwrap_or(u64::MAX)
}

/// A message the writer committed, as other replicas need to hear of it.
#[derive(Debug, Clone, Copy)]
pub enum Stored<'a> {
    /// A direct message and its recipient keys (members or sessions).
    Direct {
        /// The mesh.
        mesh: Hash32,
        /// Its seq.
        seq: u64,
        /// Recipient keys.
        recipients: &'a [PublicKey],
    },
    /// A topic, group or broadcast message.
    Fanout {
        /// The mesh.
        mesh: Hash32,
        /// Its seq.
        seq: u64,
        /// The target as on the wire.
        target: &'a str,
    },
}

/// What to tell the other replicas about one mesh, accumulated between
/// notifications.
#[derive(Debug, Default)]
struct MeshOut {
    direct: Vec<(u64, Vec<PublicKey>)>,
    fanout: Vec<(u64, String)>,
    log_len: Option<u64>,
    grants: BTreeSet<PublicKey>,
    presence: BTreeSet<PublicKey>,
    recheck: bool,
}

/// One notification payload (JSON). `b` comes first so a broker can skip
/// its own notifications by prefix, without parsing them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Wake {
    /// The sending broker instance.
    b: String,
    /// Recheck every mesh (a degraded round, or a catch-up).
    #[serde(default, skip_serializing_if = "is_false")]
    all: bool,
    /// Per mesh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    m: Vec<MeshWake>,
}

/// One mesh's part of a [`Wake`]. Keys are listed once in `k`; the other
/// fields refer to them by index.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MeshWake {
    id: Hash32,
    /// Key table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    k: Vec<PublicKey>,
    /// Direct messages: `[seq, key index, …]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    d: Vec<Vec<u64>>,
    /// Fan-out messages: `[seq, target]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    f: Vec<(u64, String)>,
    /// The log grew to this length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<u64>,
    /// Members whose grant set changed (key indexes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    g: Vec<u64>,
    /// Members whose sessions or presence changed (key indexes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    p: Vec<u64>,
    /// Recheck the whole mesh.
    #[serde(default, skip_serializing_if = "is_false")]
    r: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// This broker's side of replication: what the writer, connections and
/// hub call to tell the others, and the store it reads them back from.
#[derive(Debug)]
pub struct Replication {
    instance: String,
    /// `{"b":"<instance>"`: the start of this broker's own payloads.
    own_prefix: String,
    store: PgReplicaStore,
    outbox: Mutex<HashMap<Hash32, MeshOut>>,
    /// The next round tells everyone to recheck everything.
    outbox_all: AtomicBool,
    /// Whether another live broker shares the database. While none does,
    /// nothing is notified (a single broker pays nothing per message); the
    /// moment one appears, everyone is told to recheck everything, which
    /// covers what was committed before this broker knew.
    peers: AtomicBool,
    outbox_ready: Notify,
    presence: Mutex<HashMap<(Hash32, PublicKey), (PublicKey, PresenceWrite)>>,
    presence_ready: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Replication {
    /// This broker instance's id (its configured id and a random suffix, so
    /// a restarted broker is a new instance).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn queue(&self, mesh: Hash32, f: impl FnOnce(&mut MeshOut)) {
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
    pub fn log_grew(&self, mesh: Hash32, len: u64) {
        self.queue(mesh, |o| o.log_len = o.log_len.max(Some(len)));
    }

    /// A member's grant set changed here.
    pub fn grants_changed(&self, mesh: Hash32, member: PublicKey) {
        self.queue(mesh, |o| {
            o.grants.insert(member);
        });
    }

    fn presence_write(
        &self,
        mesh: Hash32,
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
    fn peers_seen(&self, alive: bool) {
        let was = self.peers.swap(alive, Ordering::SeqCst);
        if alive && !was {
            tracing::info!("another broker shares the database; waking it from now on");
            self.outbox_all.store(true, Ordering::SeqCst);
            self.outbox_ready.notify_one();
        }
    }

    /// Tells the other brokers (if any listen) that this one is here.
    async fn announce(&self) {
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
    fn round(&self, out: HashMap<Hash32, MeshOut>) -> Vec<String> {
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
        match mesh
            .catch_up_log(|from| self.store.log_from(&mesh.id, from))
            .await
        {
            Ok(n) => n > 0,
            Err(e) => {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "another replica's log entries were not adopted");
                false
            }
        }
    }

    /// Re-reads the mesh's log tail, every grant set and the other
    /// replicas' sessions.
    async fn refresh_mesh(&self, mesh: &MeshHub) -> Result<(), StoreError> {
        self.catch_up_log(mesh).await;
        let members: Vec<PublicKey> =
            mesh.read_log(|l| l.roster.members().keys().copied().collect());
        let stored = self.store.grants_of(&mesh.id, &members).await?;
        mesh.reload_grants(&members, stored);
        self.refresh_presence(mesh, None).await
    }

    async fn refresh_presence(
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
    state.hub.set_replication(rep.clone());
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

async fn backoff(attempt: &mut u32) {
    let wait = Duration::from_millis(50u64 << (*attempt).min(6)).min(MAX_BACKOFF);
    *attempt = attempt.saturating_add(1);
    tokio::time::sleep(wait).await;
}

/// Sends what accumulated, one round at a time: while a round is in flight
/// the next one accumulates (natural coalescing, like the writer's).
async fn notify_loop(rep: Arc<Replication>) {
    let mut sender = rep.store.notifier();
    loop {
        rep.outbox_ready.notified().await;
        let out = std::mem::take(&mut *lock(&rep.outbox));
        let payloads = rep.round(out);
        if payloads.is_empty() {
            continue;
        }
        let mut attempt = 0;
        loop {
            match sender.send(&payloads).await {
                Ok(()) => {
                    metrics::counter!(m::REPLICA_WAKES_SENT).increment(payloads.len() as u64);
                    break;
                }
                Err(e) => {
                    metrics::counter!(m::STORE_ERRORS).increment(1);
                    tracing::warn!(error = %e, "could not wake other brokers; retrying");
                    backoff(&mut attempt).await;
                }
            }
        }
    }
}

/// Writes this broker's session changes to `sessions_online` (collapsed per
/// session key, one transaction per round), then wakes the others.
async fn presence_loop(rep: Arc<Replication>) {
    let mut attempt = 0;
    loop {
        rep.presence_ready.notified().await;
        let taken = std::mem::take(&mut *lock(&rep.presence));
        if taken.is_empty() {
            continue;
        }
        let writes: Vec<PresenceWrite> = taken.values().map(|(_, w)| w.clone()).collect();
        match rep.store.write_presence(&rep.instance, &writes).await {
            Ok(()) => {
                attempt = 0;
                let mut out = lock(&rep.outbox);
                for ((mesh, _), (member, _)) in taken {
                    out.entry(mesh).or_default().presence.insert(member);
                }
                drop(out);
                rep.outbox_ready.notify_one();
            }
            Err(e) => {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::warn!(error = %e, "could not record sessions for other brokers; retrying");
                {
                    // Put back what no newer change replaced meanwhile.
                    let mut q = lock(&rep.presence);
                    for (k, v) in taken {
                        q.entry(k).or_insert(v);
                    }
                }
                backoff(&mut attempt).await;
                rep.presence_ready.notify_one();
            }
        }
    }
}

/// Moves the heartbeat; re-registers (and republishes every session) if
/// another replica took this one for dead; removes dead brokers and their
/// sessions, and then has every replica recheck everything (a dead broker
/// may have committed messages it never woke anyone for).
async fn heartbeat_loop(state: Arc<BrokerState>, rep: Arc<Replication>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first round also sweeps rows left by brokers removed earlier.
    let mut first = true;
    loop {
        tick.tick().await;
        match rep.store.heartbeat(&rep.instance).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("other brokers took this one for dead; registering again");
                match rep.store.register(&rep.instance).await {
                    Ok(()) => {
                        rep.announce().await;
                        for mesh in state.hub.loaded_meshes() {
                            for s in mesh.all_sessions() {
                                rep.session_changed(&s);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not register again"),
                }
            }
            Err(e) => {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        }
        match rep.store.reap(stale_ms(), first).await {
            Ok(reaped) => {
                first = false;
                if !reaped.brokers.is_empty() {
                    // A broker that died may have committed messages it
                    // never woke anyone for (killed between its commit and
                    // its notification): every replica drains every
                    // session it holds, and this one tells the others to.
                    tracing::warn!(
                        brokers = ?reaped.brokers,
                        sessions = reaped.sessions.len(),
                        "removed brokers that stopped answering; catching up"
                    );
                    metrics::counter!(m::REPLICA_CATCH_UPS).increment(1);
                    rep.outbox_all.store(true, Ordering::SeqCst);
                    rep.outbox_ready.notify_one();
                    // Not on this task: the heartbeat must keep its pace.
                    let (state, rep) = (state.clone(), rep.clone());
                    tokio::spawn(async move {
                        for mesh in state.hub.loaded_meshes() {
                            recheck(&state, &rep, &mesh).await;
                        }
                    });
                } else if !reaped.sessions.is_empty() {
                    let mut by_mesh: HashMap<Hash32, Vec<PublicKey>> = HashMap::new();
                    for (mesh, member) in reaped.sessions {
                        by_mesh.entry(mesh).or_default().push(member);
                    }
                    for (mesh, members) in by_mesh {
                        if let Some(hub) = state.hub.loaded(&mesh)
                            && let Err(e) = rep.refresh_presence(&hub, Some(&members)).await
                        {
                            tracing::warn!(error = %e, "could not refresh presence");
                        }
                        rep.queue(mesh, |o| o.presence.extend(members));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "removing dead brokers failed"),
        }
        if let Ok(n) = rep.store.live_peers(&rep.instance, stale_ms()).await {
            metrics::gauge!(m::REPLICAS).set(n as f64);
            rep.peers_seen(n > 0);
        }
    }
}

/// Receives notifications; after a lost connection, listens again and
/// then asks for a catch-up of everything.
async fn listen_loop(
    rep: Arc<Replication>,
    mut listener: sqlx::postgres::PgListener,
    tx: mpsc::Sender<Wake>,
) {
    loop {
        let why = match listener.try_recv().await {
            Ok(Some(n)) => {
                let payload = n.payload();
                if payload.starts_with(&rep.own_prefix) {
                    continue;
                }
                rep.peers_seen(true);
                match serde_json::from_str::<Wake>(payload) {
                    Ok(w) => {
                        metrics::counter!(m::REPLICA_WAKES_RECEIVED).increment(1);
                        if tx.send(w).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "a wake-up notification does not parse"),
                }
                continue;
            }
            Ok(None) => "connection lost".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(reason = %why, "stopped hearing other brokers; listening again");
        let mut attempt = 0;
        listener = loop {
            backoff(&mut attempt).await;
            match rep.store.listen().await {
                Ok(l) => break l,
                Err(e) => tracing::warn!(error = %e, "cannot listen for other brokers yet"),
            }
        };
        // Anything said while nobody listened is read from the tables.
        metrics::counter!(m::REPLICA_CATCH_UPS).increment(1);
        let catch_up = Wake {
            all: true,
            ..Wake::default()
        };
        if tx.send(catch_up).await.is_err() {
            return;
        }
    }
}

/// What arrived for one mesh, merged over a batch of notifications.
#[derive(Debug, Default)]
struct Incoming {
    direct: Vec<(u64, Vec<PublicKey>)>,
    fanout: Vec<(u64, String)>,
    log_len: u64,
    grants: BTreeSet<PublicKey>,
    presence: BTreeSet<PublicKey>,
    recheck: bool,
}

fn merge(into: &mut HashMap<Hash32, Incoming>, w: MeshWake) {
    let inc = into.entry(w.id).or_default();
    let key = |i: &u64| usize::try_from(*i).ok().and_then(|i| w.k.get(i)).copied();
    for d in &w.d {
        if let Some((seq, idx)) = d.split_first() {
            inc.direct
                .push((*seq, idx.iter().filter_map(key).collect()));
        }
    }
    inc.fanout.extend(w.f.iter().cloned());
    inc.log_len = inc.log_len.max(w.l.unwrap_or(0));
    inc.grants.extend(w.g.iter().filter_map(key));
    inc.presence.extend(w.p.iter().filter_map(key));
    inc.recheck |= w.r;
}

/// Acts on notifications, a batch at a time.
async fn process_loop(
    state: Arc<BrokerState>,
    rep: Arc<Replication>,
    mut rx: mpsc::Receiver<Wake>,
) {
    while let Some(first) = rx.recv().await {
        let mut all = false;
        let mut meshes: HashMap<Hash32, Incoming> = HashMap::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(w) = next.take() {
            all |= w.all;
            for mw in w.m {
                merge(&mut meshes, mw);
            }
            taken += 1;
            if taken < 256 {
                next = rx.try_recv().ok();
            }
        }
        if all {
            for mesh in state.hub.loaded_meshes() {
                recheck(&state, &rep, &mesh).await;
            }
            continue;
        }
        for (id, inc) in meshes {
            let Some(mesh) = state.hub.loaded(&id) else {
                continue;
            };
            if let Err(e) = handle(&state, &rep, &mesh, inc).await {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::warn!(error = %e, "acting on a wake-up failed; rechecking the mesh");
                recheck(&state, &rep, &mesh).await;
            }
        }
    }
}

/// Everything about a mesh, from the tables: log, grants, the other
/// replicas' sessions, and a drain of every session here.
async fn recheck(state: &Arc<BrokerState>, rep: &Replication, mesh: &Arc<MeshHub>) {
    if let Err(e) = rep.refresh_mesh(mesh).await {
        tracing::warn!(error = %e, "could not recheck a mesh");
    }
    for s in mesh.all_sessions() {
        crate::delivery::wake_drain(state.clone(), mesh.clone(), s);
    }
}

async fn handle(
    state: &Arc<BrokerState>,
    rep: &Replication,
    mesh: &Arc<MeshHub>,
    inc: Incoming,
) -> Result<(), StoreError> {
    if inc.recheck {
        recheck(state, rep, mesh).await;
        return Ok(());
    }
    if inc.log_len > mesh.read_log(|l| l.roster.len()) {
        rep.catch_up_log(mesh).await;
    }
    if !inc.grants.is_empty() {
        let members: Vec<PublicKey> = inc.grants.into_iter().collect();
        let stored = rep.store.grants_of(&mesh.id, &members).await?;
        mesh.reload_grants(&members, stored);
    }
    if !inc.presence.is_empty() {
        let members: Vec<PublicKey> = inc.presence.into_iter().collect();
        rep.refresh_presence(mesh, Some(&members)).await?;
    }
    deliver_direct(rep, mesh, inc.direct).await?;
    deliver_fanout(rep, mesh, inc.fanout).await
}

/// Whether a recipient key (member or session) has a connection here.
fn is_here(mesh: &MeshHub, key: &PublicKey) -> bool {
    mesh.session(key).is_some() || !mesh.member_sessions(key).is_empty()
}

/// Pushes direct messages stored elsewhere to their recipients connected
/// here, as a live delivery would.
async fn deliver_direct(
    rep: &Replication,
    mesh: &MeshHub,
    direct: Vec<(u64, Vec<PublicKey>)>,
) -> Result<(), StoreError> {
    let mut seqs = Vec::new();
    let mut here = BTreeSet::new();
    for (seq, recipients) in direct {
        let mut any = false;
        for r in recipients {
            if is_here(mesh, &r) {
                here.insert(r);
                any = true;
            }
        }
        if any {
            seqs.push(seq);
        }
    }
    if seqs.is_empty() {
        return Ok(());
    }
    let here: Vec<PublicKey> = here.into_iter().collect();
    let rows = rep.store.direct_rows(&mesh.id, &seqs, &here).await?;
    let mut i = 0;
    while i < rows.len() {
        let first = &rows[i];
        let mut recipients = vec![first.recipient];
        let mut j = i + 1;
        while j < rows.len() && rows[j].seq == first.seq {
            recipients.push(rows[j].recipient);
            j += 1;
        }
        let frame = deliver_text(first.seq, &first.envelope_json, first.queued_at_ms);
        let n = mesh.deliver_live(&recipients, first.priority, &frame);
        metrics::counter!(m::PUSHED).increment(n as u64);
        i = j;
    }
    Ok(())
}

/// Pushes fan-out messages stored elsewhere to the members connected here
/// that were recipients as of send time.
async fn deliver_fanout(
    rep: &Replication,
    mesh: &MeshHub,
    fanout: Vec<(u64, String)>,
) -> Result<(), StoreError> {
    if fanout.is_empty() {
        return Ok(());
    }
    let members: BTreeSet<PublicKey> = mesh.all_sessions().iter().map(|s| s.member).collect();
    if members.is_empty() {
        return Ok(());
    }
    let seqs: Vec<u64> = fanout.iter().map(|(s, _)| *s).collect();
    let rows = rep.store.fanout_rows(&mesh.id, &seqs).await?;
    if rows
        .iter()
        .any(|r| r.at_len > mesh.read_log(|l| l.roster.len()))
    {
        rep.catch_up_log(mesh).await;
    }
    for row in rows {
        let Ok(target) = row.target.parse::<Target>() else {
            continue;
        };
        // Recipients as of send time, by the same rule as a drain.
        let recipients: Vec<PublicKey> = mesh.read_log(|l| {
            members
                .iter()
                .filter(|m| {
                    route::receives(&l.roster, m, &row.sender, &target, row.at_len, || {
                        route::grants_let(mesh, m, &row.sender, &target)
                    })
                })
                .copied()
                .collect()
        });
        if recipients.is_empty() {
            continue;
        }
        let frame = deliver_text(row.seq, &row.envelope_json, row.queued_at_ms);
        let n = mesh.deliver_live(&recipients, row.priority, &frame);
        metrics::counter!(m::PUSHED).increment(n as u64);
    }
    Ok(())
}

/// Turns what accumulated into notification payloads: as few as fit under
/// [`PAYLOAD_BUDGET`] bytes each; more than [`MAX_PAYLOADS`] degrade to
/// "recheck" per mesh, and too many meshes to "recheck everything".
fn pack(instance: &str, out: HashMap<Hash32, MeshOut>) -> Vec<String> {
    let mut meshes: Vec<(Hash32, MeshOut)> = out.into_iter().collect();
    meshes.sort_by_key(|(id, _)| *id);
    let wakes = Packer::run(instance, meshes.iter().map(|(id, o)| (*id, o)));
    let mut payloads: Vec<String> = wakes.iter().map(to_json).collect();
    let fits = payloads.len() <= MAX_PAYLOADS && payloads.iter().all(|p| p.len() < 8000);
    if fits {
        return payloads;
    }
    metrics::counter!(m::REPLICA_DEGRADED).increment(1);
    let recheck: Vec<(Hash32, MeshOut)> = meshes
        .iter()
        .map(|(id, _)| {
            (
                *id,
                MeshOut {
                    recheck: true,
                    ..MeshOut::default()
                },
            )
        })
        .collect();
    payloads = Packer::run(instance, recheck.iter().map(|(id, o)| (*id, o)))
        .iter()
        .map(to_json)
        .collect();
    if payloads.len() <= MAX_PAYLOADS {
        return payloads;
    }
    vec![to_json(&Wake {
        b: instance.to_owned(),
        all: true,
        m: Vec::new(),
    })]
}

fn to_json(w: &Wake) -> String {
    // Plain data: serialization cannot fail.
    serde_json::to_string(w).unwrap_or_default()
}

/// Fills payloads up to the budget, by estimated size (hex keys, decimal
/// seqs, targets of at most ~70 safe characters).
struct Packer {
    instance: String,
    done: Vec<Wake>,
    cur: Wake,
    cur_size: usize,
    mesh: MeshWake,
    keys: HashMap<PublicKey, u64>,
    mesh_size: usize,
}

const KEY_BYTES: usize = 67;
const MESH_BASE: usize = 110;

impl Packer {
    fn run<'a>(instance: &str, meshes: impl Iterator<Item = (Hash32, &'a MeshOut)>) -> Vec<Wake> {
        let base = 16 + instance.len();
        let mut p = Packer {
            instance: instance.to_owned(),
            done: Vec::new(),
            cur: Wake {
                b: instance.to_owned(),
                ..Wake::default()
            },
            cur_size: base,
            mesh: MeshWake::default(),
            keys: HashMap::new(),
            mesh_size: MESH_BASE,
        };
        for (id, o) in meshes {
            p.mesh = MeshWake {
                id,
                ..MeshWake::default()
            };
            p.keys.clear();
            p.mesh_size = MESH_BASE;
            if o.recheck {
                p.fit(8);
                p.mesh.r = true;
            }
            if let Some(len) = o.log_len {
                p.fit(26);
                p.mesh.l = Some(len);
            }
            for member in &o.grants {
                let i = p.key_fit(member, 6);
                p.mesh.g.push(i);
            }
            for member in &o.presence {
                let i = p.key_fit(member, 6);
                p.mesh.p.push(i);
            }
            for (seq, recipients) in &o.direct {
                let new_keys = recipients
                    .iter()
                    .filter(|k| !p.keys.contains_key(k))
                    .count();
                p.fit(24 + 6 * recipients.len() + KEY_BYTES * new_keys);
                let mut entry = Vec::with_capacity(recipients.len() + 1);
                entry.push(*seq);
                for k in recipients {
                    entry.push(p.key(k));
                }
                p.mesh.d.push(entry);
            }
            for (seq, target) in &o.fanout {
                p.fit(28 + 2 * target.len());
                p.mesh.f.push((*seq, target.clone()));
            }
            p.end_mesh();
        }
        p.end_mesh();
        if !p.cur.m.is_empty() {
            p.done.push(p.cur);
        }
        p.done
    }

    fn key(&mut self, k: &PublicKey) -> u64 {
        if let Some(i) = self.keys.get(k) {
            return *i;
        }
        let i = self.mesh.k.len() as u64;
        self.mesh.k.push(*k);
        self.keys.insert(*k, i);
        i
    }

    fn key_fit(&mut self, k: &PublicKey, extra: usize) -> u64 {
        let new = if self.keys.contains_key(k) {
            0
        } else {
            KEY_BYTES
        };
        self.fit(extra + new);
        self.key(k)
    }

    fn mesh_is_empty(&self) -> bool {
        let m = &self.mesh;
        m.d.is_empty()
            && m.f.is_empty()
            && m.g.is_empty()
            && m.p.is_empty()
            && m.l.is_none()
            && !m.r
    }

    /// Makes room for `extra` bytes: if they do not fit, what this payload
    /// holds is closed and the mesh continues in the next one.
    fn fit(&mut self, extra: usize) {
        if self.cur_size + self.mesh_size + extra <= PAYLOAD_BUDGET
            || (self.cur.m.is_empty() && self.mesh_is_empty())
        {
            self.mesh_size += extra;
            return;
        }
        let id = self.mesh.id;
        self.end_mesh();
        let full = std::mem::replace(
            &mut self.cur,
            Wake {
                b: self.instance.clone(),
                ..Wake::default()
            },
        );
        if !full.m.is_empty() {
            self.done.push(full);
        }
        self.cur_size = 16 + self.instance.len();
        self.mesh = MeshWake {
            id,
            ..MeshWake::default()
        };
        self.keys.clear();
        self.mesh_size = MESH_BASE + extra;
    }

    fn end_mesh(&mut self) {
        if !self.mesh_is_empty() {
            let id = self.mesh.id;
            let m = std::mem::replace(
                &mut self.mesh,
                MeshWake {
                    id,
                    ..MeshWake::default()
                },
            );
            self.cur.m.push(m);
            self.cur_size += self.mesh_size;
        }
        self.keys.clear();
        self.mesh_size = MESH_BASE;
    }
}

#[cfg(test)]
mod tests {
    use claudemesh_crypto::SigningKey;

    use super::*;

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n).map(|_| SigningKey::generate().public()).collect()
    }

    fn unpack(payloads: &[String]) -> HashMap<Hash32, Incoming> {
        let mut into = HashMap::new();
        for p in payloads {
            let w: Wake = serde_json::from_str(p).unwrap();
            assert_eq!(w.b, "b1#00");
            for m in w.m {
                merge(&mut into, m);
            }
        }
        into
    }

    #[test]
    fn a_small_round_is_one_payload_and_round_trips() {
        let k = keys(3);
        let mesh = Hash32([7; 32]);
        let mut out = HashMap::new();
        out.insert(
            mesh,
            MeshOut {
                direct: vec![(5, vec![k[0]]), (6, vec![k[0], k[1]])],
                fanout: vec![(7, "#ops".into())],
                log_len: Some(12),
                grants: [k[2]].into_iter().collect(),
                presence: [k[1]].into_iter().collect(),
                recheck: false,
            },
        );
        let payloads = pack("b1#00", out);
        assert_eq!(payloads.len(), 1);
        assert!(payloads[0].starts_with("{\"b\":\"b1#00\""));
        let got = unpack(&payloads);
        let inc = &got[&mesh];
        assert_eq!(inc.direct, vec![(5, vec![k[0]]), (6, vec![k[0], k[1]])]);
        assert_eq!(inc.fanout, vec![(7, "#ops".to_owned())]);
        assert_eq!(inc.log_len, 12);
        assert_eq!(inc.grants, [k[2]].into_iter().collect());
        assert_eq!(inc.presence, [k[1]].into_iter().collect());
        assert!(!inc.recheck);
    }

    #[test]
    fn a_large_round_is_split_under_the_limit_and_loses_nothing() {
        let k = keys(50);
        let mesh = Hash32([1; 32]);
        let direct: Vec<(u64, Vec<PublicKey>)> =
            (0..1500).map(|i| (i, vec![k[i as usize % 50]])).collect();
        let mut out = HashMap::new();
        out.insert(
            mesh,
            MeshOut {
                direct: direct.clone(),
                presence: k.iter().copied().collect(),
                ..MeshOut::default()
            },
        );
        let payloads = pack("b1#00", out);
        assert!(
            payloads.len() > 1 && payloads.len() <= MAX_PAYLOADS,
            "{}",
            payloads.len()
        );
        for p in &payloads {
            assert!(p.len() < 8000, "{}", p.len());
        }
        let got = unpack(&payloads);
        assert_eq!(got[&mesh].direct, direct);
        assert_eq!(got[&mesh].presence.len(), 50);
    }

    #[test]
    fn too_much_degrades_to_a_recheck() {
        let k = keys(4);
        let mut out = HashMap::new();
        for m in 0..3u8 {
            out.insert(
                Hash32([m; 32]),
                MeshOut {
                    direct: (0..20_000).map(|i| (i, vec![k[i as usize % 4]])).collect(),
                    ..MeshOut::default()
                },
            );
        }
        let payloads = pack("b1#00", out);
        assert_eq!(payloads.len(), 1);
        let got = unpack(&payloads);
        assert_eq!(got.len(), 3);
        assert!(got.values().all(|i| i.recheck && i.direct.is_empty()));

        let mut out = HashMap::new();
        for m in 0..2000u32 {
            let mut id = [0; 32];
            id[..4].copy_from_slice(&m.to_le_bytes());
            out.insert(
                Hash32(id),
                MeshOut {
                    direct: (0..20).map(|i| (i, vec![k[0]])).collect(),
                    ..MeshOut::default()
                },
            );
        }
        let payloads = pack("b1#00", out);
        assert_eq!(payloads.len(), 1);
        let w: Wake = serde_json::from_str(&payloads[0]).unwrap();
        assert!(w.all && w.m.is_empty());
    }
}
