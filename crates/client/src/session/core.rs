//! [`Session`]: the state one live session shares between its tasks
//! (reader, processor, writer, supervisor, repair) and the public facade.
//! The other files of this module add its behaviour, each one concern.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::MessageId;
use claudemesh_proto::frames::Status;
use claudemesh_proto::{BrokerFrame, close};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use super::events::{Event, SendOutcome};
use super::options::ConnectOptions;
use crate::error::ClientError;
use crate::home::{Home, MeshConfig};
use crate::local::LocalStore;
use crate::mesh::{MeshState, SessionProfile};
use claudemesh_proto::clock::now_ms;

/// The state of the connection, as the supervisor sets it.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    Connecting,
    Up,
    Down,
    Stopped(String),
}

/// Where the answer to a request (or a send) is handed over.
pub(super) type Waiter<T> = oneshot::Sender<Result<T, ClientError>>;

/// One live session in one mesh.
pub(crate) struct Session {
    pub(super) home: Home,
    pub(super) local: LocalStore,
    pub(super) mesh: MeshConfig,
    pub(super) opts: ConnectOptions,
    pub(super) state: RwLock<MeshState>,
    pub(super) writer: Mutex<Option<mpsc::Sender<Message>>>,
    pub(super) pending: Mutex<HashMap<String, Waiter<BrokerFrame>>>,
    pub(super) send_waiters: Mutex<HashMap<MessageId, Vec<Waiter<SendOutcome>>>>,
    pub(super) send_reqs: Mutex<HashMap<String, MessageId>>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) link: watch::Sender<Link>,
    pub(super) next_req: AtomicU64,
    pub(super) stopping: AtomicBool,
    pub(super) in_flight: AtomicUsize,
    pub(super) sync_lock: tokio::sync::Mutex<()>,
    /// Messages this session already announced. Sessions of one device
    /// share its inbox, so "new in the inbox" is not "new to this session".
    pub(super) announced: Mutex<HashSet<(PublicKey, MessageId)>>,
    /// Outbox messages resealed in the background after `rekey_required`,
    /// and how often.
    pub(super) reseals: Mutex<HashMap<MessageId, u8>>,
    /// The task that owns the socket's write half: `close` waits for it, so
    /// what was queued (receipts, watermarks, the close frame) is on the wire
    /// before the process exits.
    pub(super) socket_writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// This session's current status and published details: what
    /// `set_presence` last set, announced again in the hello of every
    /// reconnection (the options only hold the initial values).
    pub(super) presence: Mutex<(Status, SessionProfile)>,
    /// The broker refused or ended the session as `cert_expired`: the next
    /// connection renews the certificate whatever this device's clock says.
    pub(super) renew_cert: AtomicBool,
    /// Wakes the repair task: a log sync found a key sealed to this member
    /// that it cannot use, and it is the current one.
    pub(super) repair_wanted: Arc<tokio::sync::Notify>,
    /// Fan-out watermarks: the highest seq stored per target, and what was
    /// sent on this connection (`receipts`).
    pub(super) marks: Mutex<super::receipts::Marks>,
    /// Wakes the watermark coalescer: a target's delivered watermark moved.
    pub(super) marks_wanted: Arc<tokio::sync::Notify>,
    /// Messages sent that answer another (`reply_to`, and the reply's
    /// target), until the broker accepts them: the answer is then recorded.
    pub(super) replies: Mutex<HashMap<MessageId, (MessageId, String)>>,
    /// What the last welcome said of the broker: whether it holds messages
    /// for later, and its clock against ours (a reconnect may reach
    /// another broker, or an upgraded one).
    pub(super) broker: Mutex<BrokerSeen>,
}

/// What the last welcome said of the broker, as the send path needs it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BrokerSeen {
    /// `welcome.limits.scheduled`: it holds messages for later.
    pub schedules: bool,
    /// Its clock minus ours, ms.
    pub skew_ms: i64,
}

pub(super) use claudemesh_proto::sync::lock;

impl Session {
    /// A session not yet connected, over a verified state.
    pub(super) fn new(
        home: &Home,
        local: LocalStore,
        mesh: &MeshConfig,
        opts: ConnectOptions,
        state: MeshState,
    ) -> Session {
        let (events, _) = broadcast::channel(4096);
        let (link, _) = watch::channel(Link::Connecting);
        let presence = (opts.status, opts.profile.clone());
        Session {
            home: home.clone(),
            local,
            mesh: mesh.clone(),
            opts,
            state: RwLock::new(state),
            writer: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            send_waiters: Mutex::new(HashMap::new()),
            send_reqs: Mutex::new(HashMap::new()),
            events,
            link,
            next_req: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            sync_lock: tokio::sync::Mutex::new(()),
            announced: Mutex::new(HashSet::new()),
            reseals: Mutex::new(HashMap::new()),
            presence: Mutex::new(presence),
            socket_writer: Mutex::new(None),
            renew_cert: AtomicBool::new(false),
            repair_wanted: Arc::new(tokio::sync::Notify::new()),
            marks: Mutex::new(super::receipts::Marks::default()),
            marks_wanted: Arc::new(tokio::sync::Notify::new()),
            replies: Mutex::new(HashMap::new()),
            broker: Mutex::new(BrokerSeen::default()),
        }
    }

    /// The mesh.
    pub(crate) fn mesh(&self) -> &MeshConfig {
        &self.mesh
    }

    /// The local store.
    pub(crate) fn local(&self) -> &LocalStore {
        &self.local
    }

    /// The options it connected with.
    pub(crate) fn opts(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Subscribes to its events.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// How many received frames are still being verified and stored.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// This session's status and published details as last set.
    pub(crate) fn presence(&self) -> (Status, SessionProfile) {
        lock(&self.presence).clone()
    }

    /// Records a status and published details the broker took
    /// (`presence_set`): what the next hello announces.
    pub(crate) fn presence_taken(&self, status: Option<Status>, profile: Option<SessionProfile>) {
        let mut current = lock(&self.presence);
        if let Some(status) = status {
            current.0 = status;
        }
        if let Some(profile) = profile {
            current.1 = profile;
        }
    }

    /// What the last welcome said of the broker.
    pub(crate) fn broker_seen(&self) -> BrokerSeen {
        *lock(&self.broker)
    }

    /// The broker's clock now, as this device estimates it (unix ms).
    pub(crate) fn broker_now_ms(&self) -> u64 {
        crate::schedule::broker_clock(now_ms(), self.broker_seen().skew_ms)
    }

    /// Runs `f` on the verified mesh state.
    pub(crate) fn read_state<T>(&self, f: impl FnOnce(&MeshState) -> T) -> T {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&s)
    }

    /// Runs `f` on the verified mesh state, for a change.
    pub(crate) fn write_state<T>(&self, f: impl FnOnce(&mut MeshState) -> T) -> T {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    pub(super) fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub(super) fn drop_connection(&self) {
        lock(&self.writer).take();
        let pending: Vec<_> = lock(&self.pending).drain().collect();
        for (_, w) in pending {
            let _ = w.send(Err(ClientError::Disconnected));
        }
        lock(&self.send_reqs).clear();
        if !self.opts.reconnect {
            let waiters: Vec<_> = lock(&self.send_waiters).drain().collect();
            for (_, ws) in waiters {
                for w in ws {
                    let _ = w.send(Err(ClientError::Disconnected));
                }
            }
        }
    }

    /// Marks the session stopping (its tasks end at their next look) and
    /// wakes the repair task so it sees it.
    pub(super) fn stop_tasks(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.repair_wanted.notify_one();
        self.marks_wanted.notify_one();
    }

    /// Closes the connection: sends the close frame behind what is queued
    /// and waits (briefly) until the writer task has put it on the wire.
    pub(crate) async fn close(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let writer = lock(&self.writer).take();
        if let Some(w) = writer {
            let _ = w
                .send(Message::Close(Some(
                    tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: close::NORMAL.into(),
                        reason: "".into(),
                    },
                )))
                .await;
        }
        // The runtime may be dropped right after this returns (the CLI
        // exits): wait until the queued frames were written, or a read
        // receipt recorded as sent would never reach the broker.
        let socket_writer = lock(&self.socket_writer).take();
        if let Some(task) = socket_writer {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
        }
    }
}
