//! [`MeshClient`]: a live, authenticated session in one mesh. It connects
//! (challenge, signed hello, welcome), keeps its verified copy of the
//! membership log in step with the broker's, sends messages that return once
//! the broker has durably accepted them, receives messages (verify, store,
//! then ack), and reconnects with exponential backoff and jitter, resending
//! from the outbox whatever was not accepted. Every (re)connection first
//! renews the session certificate if it expired or soon will (the broker
//! ends a connection whose certificate expires, `cert_expired`), and a
//! hello refused as expired is retried once with a renewed one.
//!
//! Before a topic, group or broadcast message is sealed, the key it needs
//! is rotated if it must be (a `rekey` after a member left the mesh, a
//! `topic_rekey` after one left a private topic, either when the key
//! sealed to this member was bad); a message the broker refuses with
//! `rekey_required` is resealed under the new key with the same id and
//! sent again. An owner or admin appending anything first writes the
//! rekey some admin's lone kick or ban left owed; [`MeshClient::repair_keys`]
//! writes the keys this member should rotate on its own — and a background
//! task calls it as soon as a log sync finds that the current key (of the
//! mesh, or of a private topic) sealed to this member is bad.
//!
//! Three tasks per connection: the reader routes frames (answers to their
//! waiters, deliveries to the processor); the processor verifies and stores
//! deliveries and records acceptances (it may fetch the log, so it must not
//! be the reader); the writer owns the socket's write half. A supervisor
//! task owns the connection's life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::{
    Envelope, EnvelopeError, MessageId, Priority, Target, VerifiedMessage,
};
use claudemesh_crypto::log::{LogEntry, PeerType, Profile, Role};
use claudemesh_proto::frames::{
    Accepted, Ack, Deliver, ErrorFrame, GrantsSetFrame, LogAppend, LogFetch, MessageStatusQuery,
    PeerListQuery, PeerPresence, PresenceSet, Request, Send, Status, TopicHistoryQuery,
    TopicHistoryResult, Welcome,
};
use claudemesh_proto::hello::{Hello, HelloPresence};
use claudemesh_proto::limits::{MAX_FRAME_BYTES, MAX_IDS_PER_ACK, MAX_LOG_ENTRIES_PER_FRAME};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode, close, encode_client_frame};
use futures_util::SinkExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::error::ClientError;
use crate::home::{Home, MeshConfig};
use crate::local::{InboxMessage, LocalStore, Rejection};
use crate::mesh::{
    MeshState, PeerView, SESSION_CERT_RENEW_BEFORE, SessionProfile, ephemeral_session, recertify,
    session_for,
};
use crate::{spaces, wire};

/// How many times a message refused with `rekey_required` is resealed
/// (after syncing the log and writing any rekey that falls to this member)
/// before the send fails.
pub const MAX_RESEALS: u8 = 3;
/// Most `peers` pages one listing reads (a broker that never stops paging
/// cannot hold the client forever).
const MAX_PEER_PAGES: usize = 1000;
/// Most `message_status_result` pages one status reads.
const MAX_STATUS_PAGES: usize = 1000;

/// Which session key a connection uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChoice {
    /// A named session stored in the home (`cli`, an MCP session's name).
    Named(String),
    /// A fresh key that is never stored.
    Ephemeral,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The session to act as.
    pub session: SessionChoice,
    /// Initial status.
    pub status: Status,
    /// Peer type announced.
    pub peer_type: Option<PeerType>,
    /// Session details published (encrypted) with presence.
    pub profile: SessionProfile,
    /// How long the first connection may take, retries included.
    pub connect_timeout: Duration,
    /// How long to wait for an answer (or an `accepted`).
    pub request_timeout: Duration,
    /// Keep reconnecting after the first connection drops.
    pub reconnect: bool,
    /// Software id sent in the hello.
    pub client_name: String,
    /// A session certificate that expires within this long is renewed
    /// (signed anew by the member key) before a connection, or a
    /// reconnection, uses it; an expired one always is.
    pub cert_renew_before: Duration,
}

impl ConnectOptions {
    /// The options a member's own CLI session uses: its stored status and
    /// summary, announced in the hello.
    pub fn for_member(mesh: &MeshConfig) -> Self {
        ConnectOptions {
            status: mesh.status,
            peer_type: Some(mesh.peer_type),
            profile: SessionProfile {
                summary: mesh.summary.clone(),
                ..SessionProfile::default()
            },
            ..ConnectOptions::default()
        }
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            session: SessionChoice::Named("cli".into()),
            status: Status::Idle,
            peer_type: None,
            profile: SessionProfile::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            reconnect: false,
            client_name: format!("claudemesh/{}", env!("CARGO_PKG_VERSION")),
            cert_renew_before: Duration::from_secs(SESSION_CERT_RENEW_BEFORE),
        }
    }
}

/// What the first handshake learned about the broker.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The broker instance.
    pub broker_id: String,
    /// Versions it speaks.
    pub versions: Vec<u32>,
    /// The version in use.
    pub version: u32,
    /// Upgrade round trip, ms.
    pub rtt_ms: u64,
    /// Broker clock minus ours, ms (corrected by half the round trip).
    pub skew_ms: i64,
    /// The welcome.
    pub welcome: Welcome,
}

/// Something that happened on the connection.
#[derive(Debug, Clone)]
pub enum Event {
    /// A verified message arrived and was stored in the inbox.
    Message(Box<InboxMessage>),
    /// An envelope was refused (it is never shown).
    Rejected(Rejection),
    /// A peer's presence changed.
    Presence(Box<PeerPresence>),
    /// The membership log grew (and was verified).
    LogChanged {
        /// New length.
        len: u64,
    },
    /// (Re)connected.
    Connected,
    /// The connection dropped; reconnecting if configured.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The client stopped for good.
    Stopped {
        /// Why.
        reason: String,
    },
    /// A key sealed to this member in a newly verified log entry does not
    /// open, or does not match its confirmation (reported, never silent).
    BadSeal(Box<crate::mesh::BadSealReport>),
}

/// A message the broker accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// The message id.
    pub id: MessageId,
    /// Broker sequence number.
    pub seq: u64,
    /// It had been accepted before (a resend).
    pub duplicate: bool,
}

/// Per-recipient delivery state of a sent message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    /// The message id.
    pub id: String,
    /// `pending` (not yet accepted), `failed`, or `accepted`.
    pub state: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Broker seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The target as sent (`member:<hex>`, `#deploys`, `@eng`, `*`), when
    /// this device still has the message in its outbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Each recipient.
    pub recipients: Vec<RecipientReport>,
}

/// One recipient's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecipientReport {
    /// Name (or short key).
    pub name: String,
    /// Key (hex).
    pub key: String,
    /// `queued`, `delivered`, `read` or `expired`.
    pub state: String,
}

#[derive(Debug, Clone)]
enum Link {
    Connecting,
    Up,
    Down,
    Stopped(String),
}

enum Work {
    Deliver(Box<Deliver>),
    Accepted(Accepted),
    SendError(MessageId, ErrorFrame),
}

type Waiter<T> = oneshot::Sender<Result<T, ClientError>>;

struct Inner {
    home: Home,
    local: LocalStore,
    mesh: MeshConfig,
    opts: ConnectOptions,
    state: RwLock<MeshState>,
    writer: Mutex<Option<mpsc::Sender<Message>>>,
    pending: Mutex<HashMap<String, Waiter<BrokerFrame>>>,
    send_waiters: Mutex<HashMap<MessageId, Vec<Waiter<SendOutcome>>>>,
    send_reqs: Mutex<HashMap<String, MessageId>>,
    events: broadcast::Sender<Event>,
    link: watch::Sender<Link>,
    next_req: AtomicU64,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    sync_lock: tokio::sync::Mutex<()>,
    /// Messages this session already announced. Sessions of one device
    /// share its inbox, so "new in the inbox" is not "new to this session".
    announced: Mutex<std::collections::HashSet<(PublicKey, MessageId)>>,
    /// Outbox messages resealed in the background after `rekey_required`,
    /// and how often.
    reseals: Mutex<HashMap<MessageId, u8>>,
    /// The task that owns the socket's write half: `close` waits for it, so
    /// what was queued (read receipts, the close frame) is on the wire
    /// before the process exits.
    socket_writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// This session's current status and published details: what
    /// `set_presence` last set, announced again in the hello of every
    /// reconnection (the options only hold the initial values).
    presence: Mutex<(Status, SessionProfile)>,
    /// The broker refused or ended the session as `cert_expired`: the next
    /// connection renews the certificate whatever this device's clock says.
    renew_cert: AtomicBool,
    /// Wakes the repair task: a log sync found a key sealed to this member
    /// that it cannot use, and it is the current one.
    repair_wanted: Arc<tokio::sync::Notify>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A connected session in one mesh.
pub struct MeshClient {
    inner: Arc<Inner>,
    info: Arc<ConnInfo>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MeshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshClient")
            .field("mesh", &self.inner.mesh.id)
            .finish_non_exhaustive()
    }
}

impl MeshClient {
    /// Connects to the mesh's broker as the chosen session and brings the
    /// local copy of the membership log up to date (verifying every entry).
    pub async fn connect(
        home: &Home,
        mesh: &MeshConfig,
        opts: ConnectOptions,
    ) -> Result<MeshClient, ClientError> {
        let local = LocalStore::open(&home.state_db_path()).await?;
        Self::connect_with(home, local, mesh, opts).await
    }

    /// [`MeshClient::connect`] with an already open local store.
    pub async fn connect_with(
        home: &Home,
        local: LocalStore,
        mesh: &MeshConfig,
        opts: ConnectOptions,
    ) -> Result<MeshClient, ClientError> {
        let now_secs = now_ms() / 1000;
        let (keys, session) = match &opts.session {
            SessionChoice::Named(name) => {
                let mut keys = home.load_keys(&mesh.id)?;
                let renew_before = opts.cert_renew_before.as_secs();
                let (session, changed) =
                    session_for(&mut keys, mesh.id, name, now_secs, renew_before)?;
                if changed {
                    let s = session.clone();
                    let name = name.clone();
                    keys = home.update_keys(&mesh.id, move |k| {
                        k.sessions.insert(name, s);
                        Ok(k.clone())
                    })?;
                }
                (keys, session)
            }
            SessionChoice::Ephemeral => {
                let keys = home.load_keys(&mesh.id)?;
                let s = ephemeral_session(&keys.member, mesh.id, now_secs)?;
                (keys, s)
            }
        };
        let mut entries = local.log_entries(&mesh.id).await?;
        if entries.is_empty() {
            // Keys but no stored log: a restored backup (it carries no
            // state.db) or a lost database. Verify the log from genesis.
            tracing::info!(mesh = %mesh.name, "no stored membership log; fetching and verifying it from genesis");
            entries =
                crate::ops::recover_log(mesh, &session, &opts.client_name, opts.connect_timeout)
                    .await?;
            local.append_log(&mesh.id, &entries).await?;
        }
        let state = MeshState::new(mesh.clone(), keys, entries, session)?;
        let (events, _) = broadcast::channel(4096);
        let (link, _) = watch::channel(Link::Connecting);
        let presence = (opts.status, opts.profile.clone());
        let inner = Arc::new(Inner {
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
            announced: Mutex::new(std::collections::HashSet::new()),
            reseals: Mutex::new(HashMap::new()),
            presence: Mutex::new(presence),
            socket_writer: Mutex::new(None),
            renew_cert: AtomicBool::new(false),
            repair_wanted: Arc::new(tokio::sync::Notify::new()),
        });
        tokio::spawn(repair_loop(
            Arc::downgrade(&inner),
            inner.repair_wanted.clone(),
        ));
        let (first_tx, first_rx) = oneshot::channel();
        let supervisor = tokio::spawn(supervise(inner.clone(), first_tx));
        match first_rx.await {
            Ok(Ok(info)) => Ok(MeshClient {
                inner,
                info,
                supervisor,
            }),
            Ok(Err(e)) => {
                supervisor.abort();
                inner.stopping.store(true, Ordering::SeqCst);
                inner.repair_wanted.notify_one();
                Err(e)
            }
            Err(_) => {
                supervisor.abort();
                inner.stopping.store(true, Ordering::SeqCst);
                inner.repair_wanted.notify_one();
                Err(ClientError::Disconnected)
            }
        }
    }

    /// What the first handshake learned.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The mesh.
    pub fn mesh(&self) -> &MeshConfig {
        &self.inner.mesh
    }

    /// The local store.
    pub fn local(&self) -> &LocalStore {
        &self.inner.local
    }

    /// Runs `f` on the verified mesh state.
    pub fn with_state<T>(&self, f: impl FnOnce(&MeshState) -> T) -> T {
        let s = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        f(&s)
    }

    /// Subscribes to events (messages, presence, connection changes).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Seals `body` to `target`, writes it to the outbox, sends it, and
    /// returns once the broker has durably accepted it.
    ///
    /// For `*`, `@group` and `#topic`, a key that must rotate first is
    /// rotated (a `rekey` or `topic_rekey` appended to the log, when it
    /// falls to this member), and a `rekey_required` refusal is answered by
    /// syncing the log and resealing with the same id, at most
    /// [`MAX_RESEALS`] times.
    pub async fn send(
        &self,
        target: Target,
        body: &[u8],
        priority: Priority,
        reply_to: Option<MessageId>,
    ) -> Result<SendOutcome, ClientError> {
        self.send_as(MessageId::random(), target, body, priority, reply_to)
            .await
    }

    /// [`MeshClient::send`] with a chosen message id.
    pub async fn send_as(
        &self,
        id: MessageId,
        target: Target,
        body: &[u8],
        priority: Priority,
        reply_to: Option<MessageId>,
    ) -> Result<SendOutcome, ClientError> {
        // TM8: a direct message to a peer whose verified key changed is
        // refused until the user verifies it again.
        if let Some(member) = self.with_state(|s| s.member_of_target(&target)) {
            let pins = crate::pins::Pins::load(&self.inner.home, &self.inner.mesh.id)?;
            self.with_state(|s| pins.check_send(s, &member))?;
        }
        let mut why = String::new();
        for _ in 0..MAX_RESEALS {
            self.inner.rotate_keys_for(&target).await?;
            let env = self.with_state(|s| {
                s.seal_as(id, target.clone(), body, priority, reply_to, now_ms())
            })?;
            self.inner.local.outbox_upsert(&env, now_ms()).await?;
            match self.inner.submit(env).await {
                Err(ClientError::Refused {
                    code: ErrorCode::RekeyRequired,
                    message,
                }) => {
                    why = message;
                    self.inner.sync_log().await?;
                }
                other => return other,
            }
        }
        Err(ClientError::Refused {
            code: ErrorCode::RekeyRequired,
            message: format!(
                "the broker still refuses the message as sealed under an old key after {MAX_RESEALS} reseals ({why}); retry in a moment"
            ),
        })
    }

    /// Verifies and opens an envelope (a delivery or a stored topic
    /// message) against the verified log, syncing the log once when the
    /// sender or key may be newer than this device's copy.
    pub async fn open_envelope(&self, env: &Envelope) -> Result<VerifiedMessage, EnvelopeError> {
        let first = self.with_state(|s| env.verify_and_open(s.roster(), s));
        match first {
            Err(e) if may_be_stale(&e) => {
                if let Err(sync) = self.inner.sync_log().await {
                    tracing::warn!(error = %sync, "membership log sync failed");
                }
                self.with_state(|s| env.verify_and_open(s.roster(), s))
            }
            other => other,
        }
    }

    /// One page of a topic's stored messages, as the broker returns them
    /// (newest first, not yet verified: open each with
    /// [`MeshClient::open_envelope`]).
    pub async fn topic_history_page(
        &self,
        topic: &str,
        limit: Option<u32>,
        before_seq: Option<u64>,
    ) -> Result<TopicHistoryResult, ClientError> {
        let topic = topic.to_owned();
        let frame = self
            .inner
            .request(
                |req| {
                    ClientFrame::TopicHistory(TopicHistoryQuery {
                        req: Some(req),
                        topic,
                        limit,
                        before_seq,
                    })
                },
                "send the topic's history",
            )
            .await?;
        match frame {
            BrokerFrame::TopicHistoryResult(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// Resolves a recipient as typed by a user (name, key prefix, session
    /// name, `member:`/`session:` key), asking the broker for the peer list
    /// when a session name may be meant.
    pub async fn resolve(&self, to: &str) -> Result<Target, ClientError> {
        if crate::mesh::names_a_session(to) {
            // `<member>@<name>`: only a connected session of that member.
            let peers = self.peers().await?;
            return self.with_state(|s| s.resolve(to, &peers));
        }
        match self.with_state(|s| s.resolve(to, &[])) {
            Ok(t) => Ok(t),
            Err(ClientError::NoSuchPeer(_)) => {
                let peers = self.peers().await?;
                self.with_state(|s| s.resolve(to, &peers))
            }
            Err(e) => Err(e),
        }
    }

    /// The mesh's members and their presence, as this device verified them
    /// (every page of the broker's list).
    pub async fn peers(&self) -> Result<Vec<PeerView>, ClientError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PEER_PAGES {
            let query = after.clone();
            let frame = self
                .inner
                .request(
                    |req| {
                        ClientFrame::PeerList(PeerListQuery {
                            req: Some(req),
                            after: query,
                        })
                    },
                    "list peers",
                )
                .await?;
            let BrokerFrame::Peers(p) = frame else {
                return Err(unexpected(&frame));
            };
            all.extend(p.peers);
            // A cursor that does not move on would loop forever.
            match p.next {
                Some(next) if after.as_ref() != Some(&next) => after = Some(next),
                _ => break,
            }
        }
        let now = now_ms() / 1000;
        let mut s = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        Ok(s.peer_views(&all, now))
    }

    /// Sets this session's status and/or summary (encrypted).
    pub async fn set_presence(
        &self,
        status: Option<Status>,
        summary: Option<String>,
    ) -> Result<(), ClientError> {
        let mut profile = lock(&self.inner.presence).1.clone();
        let blob = match &summary {
            Some(text) => {
                profile.summary = Some(text.clone()).filter(|t| !t.is_empty());
                Some(
                    self.with_state(|s| s.seal_presence(&profile))
                        .ok_or_else(|| {
                            ClientError::Invalid(
                                "this device holds no mesh key to encrypt a summary".into(),
                            )
                        })?,
                )
            }
            None => None,
        };
        let req = self.inner.new_req();
        let (tx, mut rx) = oneshot::channel();
        lock(&self.inner.pending).insert(req.clone(), tx);
        let frame = ClientFrame::PresenceSet(PresenceSet {
            req: Some(req.clone()),
            status,
            summary: blob,
            peer_type: None,
        });
        self.inner.wait_up().await?;
        self.inner.send_raw(&frame).await?;
        // The broker answers presence_set only when it fails; a ping behind
        // it proves it was processed.
        let pong = self.ping().await;
        let failed = rx.try_recv();
        lock(&self.inner.pending).remove(&req);
        if let Ok(Err(e)) = failed {
            return Err(e);
        }
        pong?;
        let mut current = lock(&self.inner.presence);
        if let Some(status) = status {
            current.0 = status;
        }
        if summary.is_some() {
            current.1 = profile;
        }
        Ok(())
    }

    /// This session's status and published details as last set.
    pub fn presence(&self) -> (Status, SessionProfile) {
        lock(&self.inner.presence).clone()
    }

    /// Hands the broker this member's signed grant set (it enforces it from
    /// then on); returns the version the broker holds.
    pub async fn push_grants(
        &self,
        set: &claudemesh_crypto::grants::GrantSet,
    ) -> Result<u64, ClientError> {
        self.inner.wait_up().await?;
        self.inner.push_grants(set).await
    }

    /// A round trip to the broker; returns its clock (unix ms).
    pub async fn ping(&self) -> Result<u64, ClientError> {
        let frame = self
            .inner
            .request(
                |req| ClientFrame::Ping(Request { req: Some(req) }),
                "answer a ping",
            )
            .await?;
        match frame {
            BrokerFrame::Pong(p) => Ok(p.time_ms),
            other => Err(unexpected(&other)),
        }
    }

    /// The delivery state of a message this device sent.
    pub async fn message_status(&self, id: &MessageId) -> Result<StatusReport, ClientError> {
        let mesh = self.inner.mesh.id;
        let local = self.inner.local.outbox_get(&mesh, id).await?;
        let target = local.as_ref().map(|e| e.target.clone());
        if let Some(entry) = &local
            && entry.state != "accepted"
        {
            return Ok(StatusReport {
                id: id.to_hex(),
                state: entry.state.clone(),
                error: entry.error.clone(),
                seq: None,
                target,
                recipients: Vec::new(),
            });
        }
        // Every page (a broadcast's status lists every member it was for).
        let mut recipients = Vec::new();
        let mut after = None;
        let mut seq = 0;
        for _ in 0..MAX_STATUS_PAGES {
            let frame = self
                .inner
                .request(
                    |req| {
                        ClientFrame::MessageStatus(MessageStatusQuery {
                            req: Some(req),
                            id: *id,
                            after,
                        })
                    },
                    "report the message status",
                )
                .await
                .map_err(|e| match e {
                    ClientError::Refused {
                        code: ErrorCode::NotFound,
                        ..
                    } => ClientError::NotFound(format!(
                        "no message {id} sent by this member is known to the broker"
                    )),
                    e => e,
                })?;
            let BrokerFrame::MessageStatusResult(page) = frame else {
                return Err(unexpected(&frame));
            };
            seq = page.seq;
            recipients.extend(page.recipients);
            match page.next {
                Some(next) if after != Some(next) => after = Some(next),
                _ => break,
            }
        }
        let recipients = self.with_state(|s| {
            recipients
                .iter()
                .map(|r| RecipientReport {
                    // A member now, or one that left after the message was
                    // sent (a fan-out message's recipients are fixed when
                    // it is sent); otherwise the key names a session.
                    name: if s.roster().is_member(&r.recipient)
                        || s.roster().departed().contains_key(&r.recipient)
                    {
                        s.name_of(&r.recipient)
                    } else {
                        format!("session {}", crate::mesh::short(&r.recipient))
                    },
                    key: r.recipient.to_hex(),
                    state: serde_json::to_value(r.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                })
                .collect()
        });
        Ok(StatusReport {
            id: id.to_hex(),
            state: "accepted".into(),
            error: None,
            seq: Some(seq),
            target,
            recipients,
        })
    }

    /// Marks inbox messages read locally and tells the broker (read receipts).
    pub async fn mark_read(&self, messages: &[InboxMessage]) -> Result<(), ClientError> {
        let now = now_ms();
        // Messages from a listing carry their row id; those from an event
        // (`local_id` 0) are found by sender and id.
        let (listed, announced): (Vec<&InboxMessage>, Vec<&InboxMessage>) =
            messages.iter().partition(|m| m.local_id != 0);
        let ids: Vec<i64> = listed.iter().map(|m| m.local_id).collect();
        self.inner
            .local
            .mark_read(&self.inner.mesh.id, &ids, now)
            .await?;
        if !announced.is_empty() {
            let keys: Vec<(&str, &str)> = announced
                .iter()
                .map(|m| (m.from.as_str(), m.id.as_str()))
                .collect();
            self.inner
                .local
                .mark_read_by_id(&self.inner.mesh.id, &keys, now)
                .await?;
        }
        self.inner.flush_read_receipts().await
    }

    /// Signs an entry built from the current verified state and appends it,
    /// retrying (after re-syncing the log) when the log moved meanwhile.
    pub async fn append_entry(
        &self,
        make: impl Fn(&MeshState) -> Result<LogEntry, ClientError>,
    ) -> Result<(), ClientError> {
        self.append_with(|s| Ok((vec![make(s)?], None))).await
    }

    /// Appends several entries atomically (a removal and its rekey).
    pub async fn append_entries(
        &self,
        make: impl Fn(&MeshState) -> Result<Vec<LogEntry>, ClientError>,
    ) -> Result<(), ClientError> {
        self.append_with(|s| Ok((make(s)?, None))).await
    }

    /// [`MeshClient::append_entries`], or with a bundle an `invite_create`
    /// (one `invite` entry and its encrypted welcome bundle).
    pub async fn append_with(
        &self,
        make: impl Fn(&MeshState) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError>,
    ) -> Result<(), ClientError> {
        self.inner.append_with(make).await
    }

    /// Appends entries after which this member can no longer read the log
    /// (its own `leave`): returns once the broker has appended them,
    /// without syncing afterwards.
    pub async fn append_final(
        &self,
        make: impl Fn(&MeshState) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError>,
    ) -> Result<(), ClientError> {
        self.inner.append_inner(make, false).await
    }

    /// Publishes this member's profile (display name, peer type) in the
    /// log, encrypted under the current epoch's profile key.
    pub async fn publish_profile(
        &self,
        name: &str,
        peer_type: PeerType,
    ) -> Result<(), ClientError> {
        let profile = Profile {
            name: name.to_owned(),
            summary: None,
            peer_type,
        };
        self.append_entry(|s| {
            let root = s.root(s.roster().epoch()).ok_or_else(|| {
                ClientError::Invalid("this device does not hold the current mesh key".into())
            })?;
            let body = profile.seal(root, &s.mesh_id());
            Ok(LogEntry::sign(
                s.member_key(),
                s.roster().len(),
                s.roster().head(),
                now_ms() / 1000,
                body,
            ))
        })
        .await
    }

    /// Publishes this member's profile from the local settings if the log
    /// has none for it (a create or join that lost its connection right
    /// after the admission). Returns whether it published.
    pub async fn ensure_profile(&self) -> Result<bool, ClientError> {
        // Missing, or sealed under an older epoch than the current one:
        // members admitted since the rekey hold only the newer epoch keys,
        // so republish for them to read it (docs/security.md §7.5).
        let missing = self.with_state(|s| {
            s.roster()
                .member(&s.member_key().public())
                .is_some_and(|m| {
                    m.profile
                        .as_ref()
                        .is_none_or(|p| p.epoch < s.roster().epoch())
                })
        });
        if !missing {
            return Ok(false);
        }
        let (name, peer_type) = (
            self.inner.mesh.display_name.clone(),
            self.inner.mesh.peer_type,
        );
        self.publish_profile(&name, peer_type).await?;
        Ok(true)
    }

    /// Fetches and verifies any new membership-log entries now.
    pub async fn sync_log(&self) -> Result<(), ClientError> {
        self.inner.sync_log().await
    }

    /// Writes the keys this member should rotate on its own now
    /// ([`spaces::repairs_needed`]): the rekey an admin's lone kick or ban
    /// left owed (owners and admins), the mesh key this device lacks (a
    /// joiner owed it, or a seal that was bad) when the log lets it write
    /// one, and the key of each private topic it is in whose seal was bad.
    /// Returns what it rotated.
    pub async fn repair_keys(&self) -> Result<Vec<spaces::Rotation>, ClientError> {
        self.inner.repair_keys().await
    }

    /// Whether this member may administer the mesh.
    pub fn is_admin(&self) -> bool {
        self.with_state(|s| {
            matches!(
                s.roster().role_of(&s.member_key().public()),
                Some(Role::Owner | Role::Admin)
            )
        })
    }

    /// Whether received frames are still being verified and stored.
    pub fn busy(&self) -> bool {
        self.inner.in_flight.load(Ordering::SeqCst) > 0
    }

    /// Waits until everything the broker had queued for this session when
    /// it connected (and anything received since) is verified, stored and
    /// acknowledged. The broker sends the backlog before it answers any
    /// request, so a ping's answer marks its end.
    pub async fn settle(&self) -> Result<(), ClientError> {
        self.ping().await?;
        let deadline = Instant::now() + self.inner.opts.request_timeout;
        while self.busy() {
            if Instant::now() > deadline {
                return Err(ClientError::Timeout("store the queued messages"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Waits until queued work (deliveries being stored and acked) is done,
    /// then closes the connection.
    pub async fn close(self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.inner.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.inner.flush_read_receipts().await;
        self.inner.stopping.store(true, Ordering::SeqCst);
        let writer = lock(&self.inner.writer).take();
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
        let socket_writer = lock(&self.inner.socket_writer).take();
        if let Some(task) = socket_writer {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.supervisor).await;
    }

    /// Waits for an event (helper for simple consumers).
    pub async fn next_event(rx: &mut broadcast::Receiver<Event>) -> Option<Event> {
        loop {
            match rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn unexpected(frame: &BrokerFrame) -> ClientError {
    ClientError::Protocol(format!("unexpected {} frame", frame.type_name()))
}

impl Inner {
    /// Sends `grants_set` on the current connection.
    async fn push_grants(
        &self,
        set: &claudemesh_crypto::grants::GrantSet,
    ) -> Result<u64, ClientError> {
        let frame = self
            .request_now(
                |req| {
                    ClientFrame::GrantsSet(GrantsSetFrame {
                        req: Some(req),
                        grants: Box::new(set.clone()),
                    })
                },
                "store the grants",
            )
            .await?;
        match frame {
            BrokerFrame::GrantsStored(g) => Ok(g.version),
            other => Err(unexpected(&other)),
        }
    }

    /// This member's grant set on this device, if any (read on every use:
    /// another process, such as the CLI, may have changed it).
    fn local_grants(&self) -> Option<claudemesh_crypto::grants::GrantSet> {
        let member = self.read_state(|s| s.member_key().public());
        match crate::grants::load(&self.home, &self.mesh.id, &member) {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the grants");
                None
            }
        }
    }

    /// Signs entries built from the current verified state and appends
    /// them atomically (or, with a bundle, one `invite_create`), retrying
    /// after re-syncing the log when it moved meanwhile. Nothing to append
    /// (`make` returned no entries, e.g. someone else already wrote the
    /// rekey) is success.
    async fn append_with(
        &self,
        make: impl Fn(&MeshState) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError>,
    ) -> Result<(), ClientError> {
        self.append_inner(make, true).await
    }

    /// [`Inner::append_with`]; without `sync_after` it returns as soon as
    /// the broker answers `log_appended` (for a member's own `leave`,
    /// after which it can no longer fetch the log). An owner or admin
    /// first writes the rekey a kick or ban left pending (nothing else may
    /// be appended before it).
    async fn append_inner(
        &self,
        make: impl Fn(&MeshState) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError>,
        sync_after: bool,
    ) -> Result<(), ClientError> {
        let owed = |s: &MeshState| s.roster().pending_removal().is_some() && spaces::may_rekey(s);
        if self.read_state(owed) {
            self.append_raw(
                |s| {
                    if !owed(s) {
                        return Ok((Vec::new(), None));
                    }
                    let r = spaces::Rotation::Mesh;
                    Ok((vec![spaces::rotation_entry(s, &r, now_ms() / 1000)?], None))
                },
                true,
            )
            .await?;
        }
        self.append_raw(make, sync_after).await
    }

    /// Appends what `make` builds, retrying after re-syncing the log when
    /// it moved meanwhile.
    async fn append_raw(
        &self,
        make: impl Fn(&MeshState) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError>,
        sync_after: bool,
    ) -> Result<(), ClientError> {
        for _ in 0..8 {
            let (entries, bundle) = self.read_state(&make)?;
            if entries.is_empty() {
                return Ok(());
            }
            let frame = |req: String| match (&bundle, entries.first()) {
                (Some(b), Some(entry)) => {
                    ClientFrame::InviteCreate(claudemesh_proto::frames::InviteCreate {
                        req: Some(req),
                        entry: entry.clone(),
                        bundle: b.clone(),
                    })
                }
                _ => ClientFrame::LogAppend(LogAppend {
                    req: Some(req),
                    entries: entries.clone(),
                }),
            };
            match self.request(frame, "append to the membership log").await {
                Ok(BrokerFrame::LogAppended(_)) => {
                    if sync_after {
                        self.sync_log().await?;
                    }
                    return Ok(());
                }
                Ok(other) => return Err(unexpected(&other)),
                Err(ClientError::Refused {
                    code: ErrorCode::LogConflict,
                    ..
                }) => {
                    self.sync_log().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Timeout(
            "settle the membership log (it kept moving)",
        ))
    }

    /// [`MeshClient::repair_keys`].
    async fn repair_keys(&self) -> Result<Vec<spaces::Rotation>, ClientError> {
        let mut done = Vec::new();
        for _ in 0..8 {
            let Some(next) = self
                .read_state(spaces::repairs_needed)
                .into_iter()
                .find(|r| !done.contains(r))
            else {
                break;
            };
            let want = next.clone();
            self.append_raw(
                |s| {
                    if !spaces::repairs_needed(s).contains(&want) {
                        return Ok((Vec::new(), None));
                    }
                    Ok((
                        vec![spaces::rotation_entry(s, &want, now_ms() / 1000)?],
                        None,
                    ))
                },
                true,
            )
            .await?;
            done.push(next);
        }
        Ok(done)
    }

    /// Rotates the key a fan-out message to `target` needs, if it must
    /// rotate and it falls to this member: a `rekey` of the mesh (`*`,
    /// `@group`, public topics) or a `topic_rekey` (private topics).
    async fn rotate_keys_for(&self, target: &Target) -> Result<(), ClientError> {
        if target.is_direct() {
            return Ok(());
        }
        for _ in 0..4 {
            if self
                .read_state(|s| spaces::rotation_needed(s, target))?
                .is_none()
            {
                return Ok(());
            }
            self.append_with(|s| match spaces::rotation_needed(s, target)? {
                None => Ok((Vec::new(), None)),
                Some(r) => Ok((vec![spaces::rotation_entry(s, &r, now_ms() / 1000)?], None)),
            })
            .await?;
        }
        Err(ClientError::Timeout(
            "settle the key rotation (the log kept moving)",
        ))
    }

    /// Reseals an outbox message the broker refused with `rekey_required`
    /// while nobody waited for it (a resend after a reconnect): opens this
    /// member's own envelope, rotates the key if it falls to this member,
    /// and sends it again with the same id.
    async fn reseal_pending(&self, id: MessageId) -> Result<(), ClientError> {
        let tries = {
            let mut r = lock(&self.reseals);
            let n = r.entry(id).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        if tries > MAX_RESEALS {
            return Err(ClientError::Refused {
                code: ErrorCode::RekeyRequired,
                message: format!("still sealed under an old key after {MAX_RESEALS} reseals"),
            });
        }
        let Some(env) = self.local.outbox_pending_one(&self.mesh.id, &id).await? else {
            return Ok(());
        };
        self.sync_log().await?;
        self.rotate_keys_for(&env.target).await?;
        let resealed = self.read_state(|s| {
            let msg = env.verify_and_open(s.roster(), s)?;
            s.seal_as(
                env.id,
                env.target.clone(),
                msg.body(),
                env.priority,
                env.reply_to,
                now_ms(),
            )
        })?;
        self.local.outbox_upsert(&resealed, now_ms()).await?;
        self.send_envelope(resealed).await
    }

    fn new_req(&self) -> String {
        format!("r{}", self.next_req.fetch_add(1, Ordering::Relaxed))
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    async fn wait_up(&self) -> Result<(), ClientError> {
        let mut rx = self.link.subscribe();
        let wait = rx.wait_for(|l| matches!(l, Link::Up | Link::Stopped(_)));
        match tokio::time::timeout(self.opts.request_timeout, wait).await {
            Ok(Ok(l)) => match &*l {
                Link::Up => Ok(()),
                Link::Stopped(why) => Err(ClientError::Closed {
                    code: close::NORMAL,
                    reason: why.clone(),
                }),
                _ => Err(ClientError::Disconnected),
            },
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => Err(ClientError::Timeout("reconnect")),
        }
    }

    async fn send_raw(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let text = encode_client_frame(frame);
        check_frame_size(frame, text.len())?;
        let writer = lock(&self.writer).clone();
        match writer {
            Some(w) => w
                .send(Message::text(text))
                .await
                .map_err(|_| ClientError::Disconnected),
            None => Err(ClientError::Disconnected),
        }
    }

    /// A request on the current connection (without waiting for `Up`: the
    /// handshake's own log sync uses it).
    async fn request_now(
        &self,
        make: impl FnOnce(String) -> ClientFrame,
        what: &'static str,
    ) -> Result<BrokerFrame, ClientError> {
        let req = self.new_req();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(req.clone(), tx);
        if let Err(e) = self.send_raw(&make(req.clone())).await {
            lock(&self.pending).remove(&req);
            return Err(e);
        }
        match tokio::time::timeout(self.opts.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                lock(&self.pending).remove(&req);
                Err(ClientError::Timeout(what))
            }
        }
    }

    async fn request(
        &self,
        make: impl FnOnce(String) -> ClientFrame,
        what: &'static str,
    ) -> Result<BrokerFrame, ClientError> {
        self.wait_up().await?;
        self.request_now(make, what).await
    }

    /// Sends (or, if not connected, leaves for the reconnect to resend) an
    /// outbox envelope and waits for `accepted`.
    async fn submit(&self, env: Envelope) -> Result<SendOutcome, ClientError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.send_waiters).entry(env.id).or_default().push(tx);
        let connected = matches!(*self.link.borrow(), Link::Up);
        if connected {
            let _ = self.send_envelope(env.clone()).await;
        } else if !self.opts.reconnect {
            lock(&self.send_waiters).remove(&env.id);
            return Err(ClientError::Disconnected);
        }
        match tokio::time::timeout(self.opts.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                lock(&self.send_waiters).remove(&env.id);
                Err(ClientError::Timeout(
                    "accept the message (it stays in the outbox and is resent on the next connection)",
                ))
            }
        }
    }

    async fn send_envelope(&self, env: Envelope) -> Result<(), ClientError> {
        let req = self.new_req();
        lock(&self.send_reqs).insert(req.clone(), env.id);
        self.send_raw(&ClientFrame::Send(Send {
            req: Some(req),
            envelope: Box::new(env),
        }))
        .await
    }

    fn resolve_send(&self, id: &MessageId, result: Result<SendOutcome, ClientError>) {
        let waiters = lock(&self.send_waiters).remove(id).unwrap_or_default();
        let mut result = Some(result);
        let n = waiters.len();
        for (i, w) in waiters.into_iter().enumerate() {
            let r = if i + 1 == n {
                result.take().unwrap_or(Err(ClientError::Disconnected))
            } else {
                match &result {
                    Some(Ok(o)) => Ok(*o),
                    Some(Err(e)) => Err(ClientError::Invalid(e.to_string())),
                    None => Err(ClientError::Disconnected),
                }
            };
            let _ = w.send(r);
        }
    }

    /// Fetches new log entries, verifies them against what this device
    /// already verified, and adopts them (opening any new root keys).
    async fn sync_log(&self) -> Result<(), ClientError> {
        let _one = self.sync_lock.lock().await;
        loop {
            let from = self.read_state(|s| s.roster().len());
            let frame = self
                .request_now(
                    |req| {
                        ClientFrame::LogFetch(LogFetch {
                            req: Some(req),
                            from_seq: from,
                            limit: None,
                        })
                    },
                    "send the membership log",
                )
                .await?;
            let BrokerFrame::LogEntries(le) = frame else {
                return Err(unexpected(&frame));
            };
            if le.len < from {
                // The broker forgot entries this device verified: a rollback.
                return Err(ClientError::LogFork(le.len));
            }
            if le.entries.is_empty() {
                let head = self.read_state(|s| s.roster().head());
                if le.len == from && le.head != head {
                    return Err(ClientError::LogFork(from.saturating_sub(1)));
                }
                if le.len > from {
                    return Err(ClientError::Protocol(
                        "the broker claims a longer log but sent no entries".into(),
                    ));
                }
                return Ok(());
            }
            if le.entries.first().map(|e| e.seq) != Some(from) {
                return Err(ClientError::Protocol(
                    "the broker sent log entries from the wrong position".into(),
                ));
            }
            let roster = self.read_state(|s| s.verify_extension(&le.entries))?;
            self.local.append_log(&self.mesh.id, &le.entries).await?;
            let (new_roots, len, bad) = {
                let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
                let known = s.bad_seals().len();
                let new = s.extend(le.entries, roster);
                let bad: Vec<_> = s.bad_seals()[known..]
                    .iter()
                    .map(|b| s.bad_seal_report(b))
                    .collect();
                (new.then(|| s.keys().roots.clone()), s.roster().len(), bad)
            };
            if bad.iter().any(|b| b.current) {
                // A key this member needs now: rotate it at once, without
                // waiting for a message to send or a reconnection.
                self.repair_wanted.notify_one();
            }
            for b in bad {
                self.emit(Event::BadSeal(Box::new(b)));
            }
            if let Some(roots) = new_roots {
                self.home.update_keys(&self.mesh.id, |k| {
                    for (e, r) in roots {
                        k.roots.entry(e).or_insert(r);
                    }
                    Ok(())
                })?;
            }
            self.emit(Event::LogChanged { len });
            if !le.more {
                return Ok(());
            }
        }
    }

    fn read_state<T>(&self, f: impl FnOnce(&MeshState) -> T) -> T {
        let s = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&s)
    }

    async fn flush_read_receipts(&self) -> Result<(), ClientError> {
        let seqs = self.local.read_receipts_due(&self.mesh.id).await?;
        if seqs.is_empty() {
            return Ok(());
        }
        if !matches!(*self.link.borrow(), Link::Up) {
            return Ok(());
        }
        for chunk in seqs.chunks(MAX_IDS_PER_ACK) {
            self.send_raw(&ClientFrame::Ack(Ack {
                seqs: chunk.to_vec(),
                read: true,
            }))
            .await?;
        }
        self.local.read_receipts_sent(&self.mesh.id, &seqs).await
    }

    /// Renews this session's certificate (the member key on this device
    /// signs a new one for the same session key) when it has expired or
    /// expires within [`ConnectOptions::cert_renew_before`], or whatever the
    /// clock says after the broker refused or ended it as `cert_expired`.
    /// A named session's renewed certificate is stored (another process
    /// of this device may have renewed it already: that one is used).
    fn renew_session_if_due(&self) -> Result<(), ClientError> {
        let now = now_ms() / 1000;
        let force = self.renew_cert.swap(false, Ordering::SeqCst);
        let renew_before = self.opts.cert_renew_before.as_secs();
        let due = self.read_state(|s| {
            let c = &s.session().cert;
            force || c.expires_at <= now.saturating_add(renew_before) || c.issued_at > now + 300
        });
        if !due {
            return Ok(());
        }
        let fresh = match &self.opts.session {
            SessionChoice::Named(name) => {
                let (name, mesh_id) = (name.clone(), self.mesh.id);
                self.home.update_keys(&self.mesh.id, move |k| {
                    if force {
                        crate::mesh::renew_session(k, mesh_id, &name, now)
                    } else {
                        session_for(k, mesh_id, &name, now, renew_before).map(|(s, _)| s)
                    }
                })?
            }
            SessionChoice::Ephemeral => {
                self.read_state(|s| recertify(s.member_key(), self.mesh.id, s.session(), now))?
            }
        };
        tracing::info!(
            expires_at = fresh.cert.expires_at,
            "renewed this session's certificate"
        );
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_session(fresh);
        Ok(())
    }

    /// One connection: open, hello, welcome, start the tasks, catch up.
    async fn establish(
        self: &Arc<Self>,
    ) -> Result<(Arc<ConnInfo>, tokio::task::JoinHandle<ClientError>), ClientError> {
        let mut opened = wire::open_with_ca(
            &self.mesh.broker_url,
            self.mesh.ca.as_deref(),
            self.opts.connect_timeout,
        )
        .await?;
        self.renew_session_if_due()?;
        let (status, profile) = lock(&self.presence).clone();
        let hello = self.read_state(|s| {
            let summary = if profile == SessionProfile::default() {
                None
            } else {
                s.seal_presence(&profile)
            };
            Hello::sign(
                s.session(),
                &opened.challenge.nonce.0,
                opened.version,
                Some(s.roster().head()),
                HelloPresence {
                    status,
                    peer_type: self.opts.peer_type,
                    summary,
                },
                &self.opts.client_name,
            )
        });
        wire::send_frame(&mut opened.sink, &ClientFrame::Hello(Box::new(hello))).await?;
        let answer = tokio::time::timeout(self.opts.connect_timeout, async {
            loop {
                // Presence chatter is not an answer (brokers before this one
                // could send it ahead of the welcome).
                match wire::next_frame(&mut opened.stream).await? {
                    BrokerFrame::Presence(_) | BrokerFrame::LogUpdate(_) => continue,
                    other => return Ok::<_, ClientError>(other),
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout("answer the hello"))??;
        let welcome = match answer {
            BrokerFrame::Welcome(w) => *w,
            other => return Err(wire::refused(other)),
        };
        let (member, session, local_len) = self.read_state(|s| {
            (
                s.member_key().public(),
                s.session().public(),
                s.roster().len(),
            )
        });
        if welcome.member != member || welcome.session != session {
            return Err(ClientError::Protocol(
                "the broker welcomed another identity than ours".into(),
            ));
        }
        if welcome.log_len < local_len {
            return Err(ClientError::LogFork(welcome.log_len));
        }
        let skew_ms = i64::try_from(welcome.time_ms).unwrap_or(i64::MAX)
            - i64::try_from(now_ms()).unwrap_or(0)
            + i64::try_from(opened.rtt_ms / 2).unwrap_or(0);
        let info = Arc::new(ConnInfo {
            broker_id: opened.challenge.broker_id.clone(),
            versions: opened.challenge.versions.clone(),
            version: opened.version,
            rtt_ms: opened.rtt_ms,
            skew_ms,
            welcome,
        });
        let (tx, mut rx) = mpsc::channel::<Message>(1024);
        let mut sink = opened.sink;
        let socket_writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let closing = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || closing {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        *lock(&self.socket_writer) = Some(socket_writer);
        *lock(&self.writer) = Some(tx);
        let (work_tx, work_rx) = mpsc::channel::<Work>(4096);
        tokio::spawn(self.clone().process_loop(work_rx));
        let reader = tokio::spawn(self.clone().read_loop(opened.stream, work_tx));
        let caught_up = async {
            self.sync_log().await?;
            // The broker enforces the grants: hand it this device's copy on
            // every connect (it keeps the newest version it has seen).
            if let Some(set) = self.local_grants()
                && let Err(e) = self.push_grants(&set).await
            {
                tracing::warn!(error = %e, "the broker did not take the grants");
            }
            for env in self.local.outbox_pending(&self.mesh.id).await? {
                self.send_envelope(env).await?;
            }
            self.flush_read_receipts().await
        };
        if let Err(e) = caught_up.await {
            reader.abort();
            lock(&self.writer).take();
            return Err(e);
        }
        let _ = self.link.send_replace(Link::Up);
        Ok((info, reader))
    }

    /// Routes every frame of one connection; returns why it ended.
    async fn read_loop(
        self: Arc<Self>,
        mut stream: wire::WsStream,
        work: mpsc::Sender<Work>,
    ) -> ClientError {
        loop {
            let frame = match wire::next_frame(&mut stream).await {
                Ok(f) => f,
                Err(e) => return e,
            };
            match frame {
                BrokerFrame::Deliver(d) => {
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                    if work.send(Work::Deliver(Box::new(d))).await.is_err() {
                        return ClientError::Disconnected;
                    }
                }
                BrokerFrame::Accepted(a) => {
                    if let Some(req) = &a.req {
                        lock(&self.send_reqs).remove(req);
                    }
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                    if work.send(Work::Accepted(a)).await.is_err() {
                        return ClientError::Disconnected;
                    }
                }
                BrokerFrame::Error(e) => {
                    let Some(req) = e.req.clone() else {
                        tracing::warn!(code = %e.code, message = %e.message, "broker error");
                        continue;
                    };
                    if let Some(waiter) = lock(&self.pending).remove(&req) {
                        let _ = waiter.send(Err(ClientError::Refused {
                            code: e.code,
                            message: e.message,
                        }));
                        continue;
                    }
                    let id = lock(&self.send_reqs).remove(&req);
                    if let Some(id) = id {
                        self.in_flight.fetch_add(1, Ordering::SeqCst);
                        if work.send(Work::SendError(id, e)).await.is_err() {
                            return ClientError::Disconnected;
                        }
                    }
                }
                BrokerFrame::Presence(p) => self.emit(Event::Presence(p.peer)),
                BrokerFrame::LogUpdate(_) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.sync_log().await {
                            tracing::warn!(error = %e, "membership log sync failed");
                            if e.is_security() {
                                me.emit(Event::Stopped {
                                    reason: e.to_string(),
                                });
                            }
                        }
                    });
                }
                other => {
                    let req = wire::frame_req(&other).map(str::to_owned);
                    match req.and_then(|r| lock(&self.pending).remove(&r)) {
                        Some(waiter) => {
                            let _ = waiter.send(Ok(other));
                        }
                        None => tracing::debug!(frame = other.type_name(), "unsolicited frame"),
                    }
                }
            }
        }
    }

    /// Stores deliveries and acceptances in batches, then acks.
    async fn process_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Work>) {
        let mut buf = Vec::with_capacity(256);
        while rx.recv_many(&mut buf, 256).await > 0 {
            let n = buf.len();
            let mut delivers = Vec::new();
            let mut accepted = Vec::new();
            for w in buf.drain(..) {
                match w {
                    Work::Deliver(d) => delivers.push(*d),
                    Work::Accepted(a) => accepted.push(a),
                    Work::SendError(id, e) => self.on_send_error(id, e).await,
                }
            }
            if !accepted.is_empty() {
                self.on_accepted(accepted).await;
            }
            if !delivers.is_empty() {
                self.on_delivers(delivers).await;
            }
            self.in_flight.fetch_sub(n, Ordering::SeqCst);
        }
    }

    async fn on_accepted(&self, accepted: Vec<Accepted>) {
        let done: Vec<(MessageId, u64)> = accepted.iter().map(|a| (a.id, a.seq)).collect();
        if let Err(e) = self
            .local
            .outbox_accepted(&self.mesh.id, &done, now_ms())
            .await
        {
            tracing::warn!(error = %e, "could not record accepted messages");
        }
        for a in &accepted {
            self.resolve_send(
                &a.id,
                Ok(SendOutcome {
                    id: a.id,
                    seq: a.seq,
                    duplicate: a.duplicate,
                }),
            );
        }
    }

    async fn on_send_error(self: &Arc<Self>, id: MessageId, e: ErrorFrame) {
        match e.code {
            ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::ShuttingDown => {
                // Transient: resend later with the same id.
                let wait = e.retry_after_ms.unwrap_or(1000).min(60_000);
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    if let Ok(pending) = me.local.outbox_pending(&me.mesh.id).await
                        && let Some(env) = pending.into_iter().find(|env| env.id == id)
                    {
                        let _ = me.send_envelope(env).await;
                    }
                });
            }
            ErrorCode::RekeyRequired if !lock(&self.send_waiters).contains_key(&id) => {
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = me.reseal_pending(id).await {
                        tracing::warn!(error = %err, id = %id, "could not reseal a refused message");
                        let _ = me
                            .local
                            .outbox_failed(&me.mesh.id, &id, &err.to_string())
                            .await;
                    }
                });
            }
            code => {
                let message = e.message.clone();
                if let Err(err) = self.local.outbox_failed(&self.mesh.id, &id, &message).await {
                    tracing::warn!(error = %err, "could not record a refused message");
                }
                self.resolve_send(&id, Err(ClientError::Refused { code, message }));
            }
        }
    }

    /// Verifies a batch of deliveries, stores the good ones in one
    /// transaction, records the refused ones, then acks them all (a message
    /// is acked only once it is stored).
    async fn on_delivers(&self, delivers: Vec<Deliver>) {
        let mut synced = false;
        let mut acks = Vec::with_capacity(delivers.len());
        let mut verified = Vec::with_capacity(delivers.len());
        let now = now_ms();
        let mut grants: Option<Option<claudemesh_crypto::grants::GrantSet>> = None;
        for d in delivers {
            let mut result = self.read_state(|s| d.envelope.verify_and_open(s.roster(), s));
            if !synced && result.as_ref().is_err_and(may_be_stale) {
                // A member or key this device has not seen yet: catch up once.
                synced = true;
                if let Err(e) = self.sync_log().await {
                    tracing::warn!(error = %e, "membership log sync failed");
                }
                result = self.read_state(|s| d.envelope.verify_and_open(s.roster(), s));
            }
            if let Ok(msg) = &result {
                let grants = grants.get_or_insert_with(|| self.local_grants());
                if !crate::grants::allows(
                    grants.as_ref(),
                    &msg.sender_member(),
                    &msg.target().to_string(),
                ) {
                    // The broker delivered what these grants refuse (it held
                    // an older set): acked, recorded, never shown.
                    let sender = msg.sender_member();
                    let reason = crate::grants::BLOCKED_REASON.to_owned();
                    if self
                        .local
                        .reject(&self.mesh.id, d.seq, Some(&sender), &reason, now)
                        .await
                        .is_ok()
                    {
                        acks.push(d.seq);
                    }
                    self.emit(Event::Rejected(Rejection {
                        seq: d.seq,
                        sender: Some(sender.to_hex()),
                        reason,
                        at: now,
                    }));
                    continue;
                }
            }
            match result {
                Ok(msg) => verified.push((msg, d.seq)),
                Err(e) => {
                    let sender = d.envelope.sender.member;
                    tracing::warn!(seq = d.seq, error = %e, "refused an envelope");
                    let reason = e.to_string();
                    if self
                        .local
                        .reject(&self.mesh.id, d.seq, Some(&sender), &reason, now)
                        .await
                        .is_ok()
                    {
                        // Recorded and reported; acked so it is not redelivered forever.
                        acks.push(d.seq);
                    }
                    self.emit(Event::Rejected(Rejection {
                        seq: d.seq,
                        sender: Some(sender.to_hex()),
                        reason,
                        at: now,
                    }));
                }
            }
        }
        let my_name = self.read_state(spaces::my_name);
        let batch: Vec<_> = verified
            .iter()
            .map(|(m, seq)| (m, *seq, spaces::flags_me(m, &my_name)))
            .collect();
        match self
            .local
            .store_inbound_flagged(&self.mesh.id, &batch, now)
            .await
        {
            Ok(_) => {
                for (msg, seq, mentions_me) in &batch {
                    acks.push(*seq);
                    self.announce(msg, *seq, *mentions_me, now);
                }
            }
            // Not stored: not acked; they come back on the next connection.
            Err(e) => tracing::error!(error = %e, "could not store messages"),
        }
        acks.sort_unstable();
        for chunk in acks.chunks(MAX_IDS_PER_ACK) {
            let _ = self
                .send_raw(&ClientFrame::Ack(Ack {
                    seqs: chunk.to_vec(),
                    read: false,
                }))
                .await;
        }
    }

    /// Tells subscribers about a stored message, once per session.
    fn announce(&self, msg: &VerifiedMessage, seq: u64, mentions_me: bool, now: u64) {
        let first_time = {
            let mut seen = lock(&self.announced);
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert((msg.sender_member(), msg.id()))
        };
        if first_time {
            self.emit(Event::Message(Box::new(InboxMessage {
                local_id: 0,
                id: msg.id().to_hex(),
                from: msg.sender_member().to_hex(),
                from_session: msg.sender_session().to_hex(),
                target: msg.target().to_string(),
                body: String::from_utf8_lossy(msg.body()).into_owned(),
                priority: msg.priority().as_str().to_owned(),
                reply_to: msg.reply_to().map(|r| r.to_hex()),
                sent_at: msg.sent_at(),
                received_at: now,
                seq,
                read: false,
                mentions_me,
            })));
        }
    }

    fn drop_connection(&self) {
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
}

/// Refuses a `log_append` or `invite_create` the broker would not take: one
/// over the protocol's frame size (the broker would answer
/// `frame_too_large` and close the connection) or carrying more log entries
/// than one frame may. Other frames are bounded by construction.
fn check_frame_size(frame: &ClientFrame, bytes: usize) -> Result<(), ClientError> {
    let entries = match frame {
        ClientFrame::LogAppend(a) => a.entries.len(),
        ClientFrame::InviteCreate(_) => 1,
        _ => return Ok(()),
    };
    if bytes > MAX_FRAME_BYTES || entries > MAX_LOG_ENTRIES_PER_FRAME {
        return Err(ClientError::FrameTooLarge {
            frame: frame.type_name(),
            bytes,
            entries,
            max_bytes: MAX_FRAME_BYTES,
            max_entries: MAX_LOG_ENTRIES_PER_FRAME,
        });
    }
    Ok(())
}

/// Whether a refusal might go away once this device has the newest log.
fn may_be_stale(e: &EnvelopeError) -> bool {
    matches!(
        e,
        EnvelopeError::SenderNotMember(_) | EnvelopeError::NoKey { .. }
    )
}

/// Whether the broker refused or ended the session because its certificate
/// expired (renewing it helps).
fn is_cert_expired(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { code, .. } => *code == ErrorCode::CertExpired,
        ClientError::Closed { reason, .. } => reason == ErrorCode::CertExpired.as_str(),
        _ => false,
    }
}

/// Whether a failure means retrying cannot help (a `cert_expired` is
/// retried once with a renewed certificate before this is asked).
fn is_terminal(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { code, .. } => matches!(
            code,
            ErrorCode::NotAMember
                | ErrorCode::Removed
                | ErrorCode::Banned
                | ErrorCode::UnknownMesh
                | ErrorCode::BadCertificate
                | ErrorCode::CertExpired
                | ErrorCode::UnsupportedVersion
                | ErrorCode::BadSignature
        ),
        ClientError::Closed { code, .. } => matches!(
            *code,
            close::KICKED | close::BANNED | close::POLICY | close::UNSUPPORTED_VERSION
        ),
        ClientError::LogInvalid(_) | ClientError::LogFork(_) | ClientError::Protocol(_) => true,
        ClientError::Local(_) => true,
        ClientError::Tls(e) => e.is_terminal(),
        _ => false,
    }
}

/// Failed repairs in a row after which the repair task waits for the next
/// bad seal (or the caller's own repair) instead of retrying.
const MAX_REPAIR_FAILURES: u32 = 6;

/// Writes the keys this member should rotate on its own
/// ([`MeshClient::repair_keys`]) as soon as a log sync finds a bad seal of
/// a current key, so a long-lived client (the MCP server, `inbox --watch`)
/// reads what is sent under the next key at once. A failed repair is
/// retried after [`backoff`], at most [`MAX_REPAIR_FAILURES`] times in a
/// row. Holds the client only while it works; ends when the client is gone
/// or stopped.
async fn repair_loop(inner: std::sync::Weak<Inner>, wanted: Arc<tokio::sync::Notify>) {
    loop {
        wanted.notified().await;
        let mut failures: u32 = 0;
        loop {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if inner.stopping.load(Ordering::SeqCst)
                || matches!(*inner.link.borrow(), Link::Stopped(_))
            {
                return;
            }
            if inner.read_state(spaces::repairs_needed).is_empty() {
                break;
            }
            match inner.repair_keys().await {
                Ok(done) => {
                    tracing::info!(
                        rotated = done.len(),
                        "rotated the keys sealed badly to this member"
                    );
                    break;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures >= MAX_REPAIR_FAILURES {
                        tracing::warn!(error = %e, "could not rotate the keys sealed badly to this member; waiting for the next bad seal");
                        break;
                    }
                    tracing::warn!(error = %e, "could not rotate the keys sealed badly to this member; retrying");
                }
            }
            drop(inner);
            tokio::time::sleep(backoff(failures)).await;
        }
    }
}

/// Exponential backoff with full jitter: 250 ms doubling to 30 s, each wait
/// a random point in the upper half of the window.
fn backoff(attempt: u32) -> Duration {
    let base_ms = 250u64.saturating_mul(1u64 << attempt.min(7)).min(30_000);
    let r: [u8; 2] = claudemesh_crypto::keys::random_bytes();
    let frac = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX);
    Duration::from_millis((base_ms as f64 * (0.5 + 0.5 * frac)) as u64)
}

async fn supervise(inner: Arc<Inner>, first: oneshot::Sender<Result<Arc<ConnInfo>, ClientError>>) {
    let mut first = Some(first);
    let started = Instant::now();
    let mut attempt: u32 = 0;
    // A hello refused `cert_expired` is retried once with a renewed
    // certificate (this device's clock may disagree with the broker's)
    // before it counts as final.
    let mut renewed_for_refusal = false;
    let stop = |inner: &Inner, reason: String| {
        let _ = inner.link.send_replace(Link::Stopped(reason.clone()));
        inner.emit(Event::Stopped { reason });
        inner.drop_connection();
        // The repair task sees the client stopped and ends.
        inner.repair_wanted.notify_one();
    };
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            stop(&inner, "closed".into());
            return;
        }
        let _ = inner.link.send_replace(Link::Connecting);
        match inner.establish().await {
            Ok((info, reader)) => {
                attempt = 0;
                renewed_for_refusal = false;
                if let Some(f) = first.take() {
                    let _ = f.send(Ok(info));
                }
                inner.emit(Event::Connected);
                let why = reader.await.unwrap_or(ClientError::Disconnected);
                let _ = inner.link.send_replace(Link::Down);
                inner.drop_connection();
                if inner.stopping.load(Ordering::SeqCst) {
                    stop(&inner, "closed".into());
                    return;
                }
                if is_terminal(&why) || !inner.opts.reconnect {
                    stop(&inner, why.to_string());
                    return;
                }
                if is_cert_expired(&why) {
                    // The certificate expired while connected: the next
                    // hello carries a renewed one.
                    inner.renew_cert.store(true, Ordering::SeqCst);
                }
                tracing::info!(reason = %why, "connection lost; reconnecting");
                inner.emit(Event::Disconnected {
                    reason: why.to_string(),
                });
            }
            Err(e) if is_cert_expired(&e) && !renewed_for_refusal => {
                tracing::info!(
                    "the broker refused this session's certificate as expired; renewing it"
                );
                renewed_for_refusal = true;
                inner.renew_cert.store(true, Ordering::SeqCst);
            }
            Err(e) => {
                let out_of_time = started.elapsed() >= inner.opts.connect_timeout;
                if is_terminal(&e) || (first.is_some() && out_of_time) {
                    let reason = e.to_string();
                    match first.take() {
                        Some(f) => {
                            let _ = f.send(Err(e));
                        }
                        None => tracing::warn!(error = %reason, "cannot reconnect"),
                    }
                    stop(&inner, reason);
                    return;
                }
                if first.is_none() && !inner.opts.reconnect {
                    stop(&inner, e.to_string());
                    return;
                }
            }
        }
        attempt = attempt.saturating_add(1);
        let mut wait = backoff(attempt);
        if first.is_some() {
            let left = inner.opts.connect_timeout.saturating_sub(started.elapsed());
            wait = wait.min(left);
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for attempt in 0..20 {
            let d = backoff(attempt);
            let base = 250u64.saturating_mul(1 << attempt.min(7)).min(30_000);
            assert!(d.as_millis() as u64 >= base / 2 && d.as_millis() as u64 <= base);
        }
    }

    #[test]
    fn kicks_and_auth_failures_are_terminal_network_blips_are_not() {
        assert!(is_terminal(&ClientError::Closed {
            code: close::KICKED,
            reason: String::new()
        }));
        assert!(!is_terminal(&ClientError::Closed {
            code: close::GOING_AWAY,
            reason: String::new()
        }));
        assert!(!is_terminal(&ClientError::Unreachable {
            url: String::new(),
            reason: String::new()
        }));
        assert!(is_terminal(&ClientError::Refused {
            code: ErrorCode::NotAMember,
            message: String::new()
        }));
    }
}
