//! [`MeshClient`]: the public facade of a live session in one mesh (the
//! CLI, the MCP server, the bench and the broker's tests hold one). Each
//! method calls down into [`crate::session`], which owns the connection,
//! the handshake, the outbox, what arrives, and the verified log; the
//! features (messages, topics, groups, moderation, invites, grants) call
//! this facade, and each request of a feature is a `MeshClient` method in
//! that feature's module (`peers`, `topics`, `messages`, `grants`).
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use claudemesh_crypto::envelope::{
    Envelope, EnvelopeError, MessageId, Priority, Target, VerifiedMessage,
};
use claudemesh_crypto::log::{LogEntry, PeerType, Profile, Role};
use claudemesh_crypto::receipt::Via;
use tokio::sync::broadcast;

use crate::error::{ClientError, MissingKey};
use crate::home::{Home, MeshConfig};
use crate::local::{InboxMessage, LocalStore};
use crate::mesh::MeshState;
use crate::mesh::rotation::Rotation;
use crate::session::Session;
pub use crate::session::{
    ConnInfo, ConnectOptions, Event, MAX_RESEALS, RecipientReport, SendOutcome, SessionChoice,
    StatusReport,
};
pub use claudemesh_proto::clock::now_ms;

/// How a message is sent: its priority, the message it answers, its
/// time to live (none: the broker's retention), and when it is to be
/// delivered (none: now). Not shown to a recipient by the deadline (the
/// broker's receive time, or delivery time, plus the TTL), the message is
/// reported `expired` to its sender and dropped (`docs/protocol.md` §5); a
/// resend after a lost connection carries only what remains of it
/// ([`crate::ttl`]). A message to deliver later is held by the broker and
/// stored and delivered at that time ([`crate::schedule`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Delivery priority.
    pub priority: Priority,
    /// The message this one answers.
    pub reply_to: Option<MessageId>,
    /// Time to live, at least [`crate::ttl::MIN_TTL`].
    pub ttl: Option<Duration>,
    /// Deliver at this time (unix ms, by the broker's clock:
    /// [`MeshClient::broker_now_ms`] estimates it). Within a second of
    /// the broker's now, or past, the message is sent at once; later, the
    /// broker must offer scheduling (`welcome.limits.scheduled`), or the
    /// send fails with [`ClientError::SchedulingUnsupported`] before
    /// anything is sent.
    pub deliver_at_ms: Option<u64>,
}

impl SendOptions {
    /// With this priority and reply, without a time to live, now.
    pub fn new(priority: Priority, reply_to: Option<MessageId>) -> Self {
        SendOptions {
            priority,
            reply_to,
            ttl: None,
            deliver_at_ms: None,
        }
    }

    /// With a time to live.
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// To be delivered at this time (unix ms, the broker's clock).
    pub fn deliver_at_ms(mut self, deliver_at_ms: Option<u64>) -> Self {
        self.deliver_at_ms = deliver_at_ms;
        self
    }
}

/// A connected session in one mesh.
pub struct MeshClient {
    inner: Arc<Session>,
    info: Arc<ConnInfo>,
    supervisor: tokio::task::JoinHandle<()>,
    /// Team memory's coordination keys and sync lock ([`crate::memory`]).
    memory: crate::memory::MemoryCache,
}

impl std::fmt::Debug for MeshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshClient")
            .field("mesh", &self.inner.mesh().id)
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
        let (inner, info, supervisor) = Session::start(home, local, mesh, opts).await?;
        Ok(MeshClient {
            inner,
            info,
            supervisor,
            memory: crate::memory::MemoryCache::default(),
        })
    }

    /// The live session below this facade (the features' requests go
    /// through it).
    pub(crate) fn session(&self) -> &Session {
        &self.inner
    }

    /// Team memory's cache of coordination keys and its sync lock.
    pub(crate) fn memory_cache(&self) -> &crate::memory::MemoryCache {
        &self.memory
    }

    /// What the first handshake learned.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The mesh.
    pub fn mesh(&self) -> &MeshConfig {
        self.inner.mesh()
    }

    /// The local store.
    pub fn local(&self) -> &LocalStore {
        self.inner.local()
    }

    /// Runs `f` on the verified mesh state.
    pub fn with_state<T>(&self, f: impl FnOnce(&MeshState) -> T) -> T {
        self.inner.read_state(f)
    }

    /// Subscribes to events (messages, presence, connection changes).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.subscribe()
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
        self.send_with(id, target, body, SendOptions::new(priority, reply_to))
            .await
    }

    /// [`MeshClient::send_as`] with every option, a time to live among
    /// them: a TTL below [`crate::ttl::MIN_TTL`] is refused before anything
    /// is sealed, and one whose deadline passes while the message waits in
    /// the outbox ends the send with [`ClientError::Expired`].
    pub async fn send_with(
        &self,
        id: MessageId,
        target: Target,
        body: &[u8],
        opts: SendOptions,
    ) -> Result<SendOutcome, ClientError> {
        self.inner.send_as(id, target, body, opts).await
    }

    /// Verifies and opens an envelope (a delivery or a stored topic
    /// message) against the verified log, syncing the log once when the
    /// sender or key may be newer than this device's copy.
    pub async fn open_envelope(&self, env: &Envelope) -> Result<VerifiedMessage, EnvelopeError> {
        self.inner.open_envelope(env).await
    }

    /// A round trip to the broker; returns its clock (unix ms).
    pub async fn ping(&self) -> Result<u64, ClientError> {
        self.inner.ping().await
    }

    /// Marks inbox messages shown, `via` how (printed by `inbox`, returned
    /// by an MCP tool, pushed on a channel, injected by a hook, returned by
    /// the gateway), and sends their senders the signed evidence: a direct
    /// message's `shown` receipt, or the shown watermark of a topic, group
    /// or broadcast (every message of it up to the highest seq with nothing
    /// unshown below). The first showing counts. Not connected, the
    /// receipts are sent after the next hello.
    pub async fn mark_shown(&self, messages: &[InboxMessage], via: Via) -> Result<(), ClientError> {
        self.inner.mark_shown(messages, via).await
    }

    /// [`MeshClient::mark_shown`] by `claudemesh inbox` ([`Via::Inbox`]).
    pub async fn mark_read(&self, messages: &[InboxMessage]) -> Result<(), ClientError> {
        self.mark_shown(messages, Via::Inbox).await
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
            let root = s
                .root(s.roster().epoch())
                .ok_or(ClientError::MissingKey(MissingKey::CurrentMeshKey))?;
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
            self.inner.mesh().display_name.clone(),
            self.inner.mesh().peer_type,
        );
        self.publish_profile(&name, peer_type).await?;
        Ok(true)
    }

    /// Fetches and verifies any new membership-log entries now.
    pub async fn sync_log(&self) -> Result<(), ClientError> {
        self.inner.sync_log().await
    }

    /// Writes the keys this member should rotate on its own now
    /// ([`crate::mesh::rotation::repairs_needed`]): the rekey an admin's lone kick or ban
    /// left owed (owners and admins), the mesh key this device lacks (a
    /// joiner owed it, or a seal that was bad) when the log lets it write
    /// one, and the key of each private topic it is in whose seal was bad.
    /// Returns what it rotated.
    pub async fn repair_keys(&self) -> Result<Vec<Rotation>, ClientError> {
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
        self.inner.in_flight() > 0
    }

    /// Waits until everything the broker had queued for this session when
    /// it connected (and anything received since) is verified, stored and
    /// acknowledged (receipts and delivered watermarks sent). The broker sends the backlog before it answers any
    /// request, so a ping's answer marks its end.
    pub async fn settle(&self) -> Result<(), ClientError> {
        self.ping().await?;
        let deadline = Instant::now() + self.inner.opts().request_timeout;
        while self.busy() {
            if Instant::now() > deadline {
                return Err(ClientError::Timeout("store the queued messages"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The delivered watermarks now rather than at the coalescer's pace.
        match self.inner.flush_delivered_marks().await {
            Err(ClientError::Disconnected) => Ok(()),
            other => other,
        }
    }

    /// Waits until queued work (deliveries being stored and acked) is done,
    /// then closes the connection.
    pub async fn close(self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.inner.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.inner.flush_delivered_marks().await;
        let _ = self.inner.flush_receipts(None).await;
        self.inner.close().await;
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
