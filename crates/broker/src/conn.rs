//! One websocket connection, from challenge to close: the handshake (TM2),
//! invite fetch and join before it, then every request of an authenticated
//! session. Frames are size-checked before parsing and rate-limited; every
//! refusal is a typed `error`, and only the errors the protocol marks fatal
//! end the connection.
//!
//! Two tasks per connection: this one reads and answers; the socket task
//! writes what the bounded outbound queue holds, pings, and closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use claudemesh_crypto::cert::CertError;
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::grants::{Cap, Decision};
use claudemesh_crypto::invite::verify_invite_proof;
use claudemesh_crypto::keys::random_bytes;
use claudemesh_crypto::log::{EntryBody, LogEntry, RemoveKind, Roster};
use claudemesh_crypto::{Hash32, PublicKey};
use claudemesh_proto::frames::{
    Ack, Challenge, ChallengeNonce, Deliver, DeliveryState, GrantsStored, InviteBundle, Joined,
    LogAppended, LogEntries, MessageStatusResult, PeerPresence, Peers, Pong, PresenceSet,
    RecipientStatus, TopicHistoryQuery, TopicHistoryResult, Welcome,
};
use claudemesh_proto::hello::{Hello, HelloError};
use claudemesh_proto::limits::{
    HELLO_TIMEOUT_MS, IDLE_TIMEOUT_MS, MAX_BUNDLE_BYTES, MAX_FRAME_BYTES, MAX_IDS_PER_ACK,
    MAX_LOG_ENTRIES_PER_FRAME, MAX_QUEUED_BYTES, MAX_SUMMARY_CIPHERTEXT_BYTES, PING_INTERVAL_MS,
    PRESENCE_RATE_BURST, PRESENCE_RATE_PER_SEC,
};
use claudemesh_proto::version::SUPPORTED_VERSIONS;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode, FrameError, Limits, close};
use futures_util::{SinkExt, StreamExt};

use crate::admission::{Origin, PendingGuard};
use crate::config::MeshCreatePolicy;
use crate::hub::{
    AppendError, AppendLimits, GrantsSetError, MemberRates, MeshHub, SessionHandle,
    SessionPresence, deliver_text, error_text, text,
};
use crate::metrics as m;
use crate::outbox::{Outbox, OutboxReader, Outgoing};
use crate::ratelimit::TokenBucket;
use crate::server::BrokerState;
use crate::store::{
    AckOp, AppendExtras, FanoutRow, MemberState, NewMessage, PageLimit, PendingMessage,
    SessionRecord, fanout_weight,
};
use crate::writer::{AcceptReply, WriteJob};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Least time between two catch-ups of a mesh's log asked for by a
/// connection (see `Connection::caught_up`).
const CATCH_UP_INTERVAL_MS: u64 = 200;
/// Stored messages fetched per page when draining to a session, from each
/// source (direct, fan-out): a page is held while the session's reader
/// takes it, so it is bounded by weight too.
const DRAIN_PAGE: PageLimit = PageLimit {
    rows: 256,
    bytes: 512 * 1024,
};
/// Recipients per `message_status_result` page (~100 bytes of JSON each).
const STATUS_PAGE: usize = 512;
/// Topic history page when the client does not say.
const DEFAULT_HISTORY_PAGE: u32 = 50;
/// Largest topic history page.
const MAX_HISTORY_PAGE: u32 = 200;
/// Bytes of stored envelopes one `topic_history_result` carries at most:
/// the frame limit less room for the frame around them.
const HISTORY_BYTES_PER_FRAME: usize = claudemesh_proto::limits::MAX_FRAME_BYTES - 4096;
/// JSON around one envelope in a history answer (`seq`, `queued_at_ms`,
/// punctuation), counted generously.
const DELIVER_OVERHEAD_BYTES: usize = 64;

/// What happens after a frame is handled.
enum Flow {
    Continue,
    Close(u16, &'static str),
}

/// Serves one upgraded websocket until it closes.
pub async fn serve(
    socket: WebSocket,
    broker: Arc<BrokerState>,
    origin: Origin,
    pending: PendingGuard,
) {
    let conn_id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let _tracked = broker.connections.enter();
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    let (sink, stream) = socket.split();
    let (out, reader) = Outbox::new(MAX_QUEUED_BYTES);
    let socket_task = tokio::spawn(write_loop(sink, reader, broker.config.write_timeout));
    let mut conn = Connection {
        conn_id,
        nonce: random_bytes(),
        broker: broker.clone(),
        out,
        rate: TokenBucket::new(broker.config.rate_per_sec, broker.config.rate_burst),
        presence_rate: TokenBucket::new(PRESENCE_RATE_PER_SEC, PRESENCE_RATE_BURST),
        origin,
        pending: Some(pending),
        invite: None,
        session: None,
        mesh: None,
    };
    let flow = conn.run(stream).await;
    let (code, reason) = match flow {
        Flow::Close(code, reason) => (code, reason),
        Flow::Continue => (close::NORMAL, ""),
    };
    conn.finish(code, reason).await;
    let _ = socket_task.await;
    metrics::gauge!(m::CONNECTIONS).decrement(1.0);
}

/// How long the socket task keeps writing what is queued once the
/// connection must end.
const CLOSING_GRACE: Duration = Duration::from_secs(2);

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Writes one message; false if it failed or took longer than `limit`.
async fn write(sink: &mut Sink, m: Message, limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, sink.send(m)).await, Ok(Ok(())))
}

/// Writes queued frames and coalesced presence to the socket, pings every
/// 30 s, closes on request. A write that does not complete within
/// `write_timeout` (a peer that stopped reading, its socket buffers full),
/// or a frame that waited in the queue longer than
/// [`crate::outbox::MAX_QUEUE_AGE`], ends the connection: nothing waits on
/// a reader that does not read. Once the connection must end, what is still
/// queued gets [`CLOSING_GRACE`] in all, then the socket is dropped.
async fn write_loop(mut sink: Sink, mut reader: OutboxReader, write_timeout: Duration) {
    let mut ping = tokio::time::interval(Duration::from_millis(PING_INTERVAL_MS));
    ping.tick().await;
    let outbox = reader.outbox();
    let close_frame = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }))
    };
    // Presence goes out only after the first queued frame (an
    // authenticated session's first frame is its `welcome`).
    let mut wrote_first = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    let limit = |deadline: Option<tokio::time::Instant>| match deadline {
        Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
        None => write_timeout,
    };
    loop {
        if deadline.is_none() && outbox.is_killed() {
            deadline = Some(tokio::time::Instant::now() + CLOSING_GRACE);
        }
        let grace_over = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = grace_over => break,
            out = reader.recv() => match out {
                Some(Outgoing::Text(t, lane, permits, queued_at)) => {
                    if deadline.is_none() && !reader.check_age(queued_at.elapsed()) {
                        reader.written(lane, permits);
                        continue;
                    }
                    let ok = write(&mut sink, Message::Text(t), limit(deadline)).await;
                    reader.written(lane, permits);
                    if !ok {
                        metrics::counter!(m::WRITE_TIMEOUTS).increment(1);
                        break;
                    }
                    wrote_first = true;
                    // Presence goes out between queued frames too, so a busy
                    // queue never starves it.
                    if deadline.is_none() {
                        for f in outbox.take_presence() {
                            if !write(&mut sink, Message::Text(f), write_timeout).await {
                                metrics::counter!(m::WRITE_TIMEOUTS).increment(1);
                                deadline = Some(tokio::time::Instant::now());
                                break;
                            }
                        }
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let room = limit(deadline).min(CLOSING_GRACE);
                    let _ = write(&mut sink, close_frame(code, reason), room).await;
                    break;
                }
                None => break,
            },
            () = outbox.killed(), if deadline.is_none() => {}
            () = outbox.presence_ready(), if deadline.is_none() && wrote_first => {
                for f in outbox.take_presence() {
                    if !write(&mut sink, Message::Text(f), write_timeout).await {
                        metrics::counter!(m::WRITE_TIMEOUTS).increment(1);
                        deadline = Some(tokio::time::Instant::now());
                        break;
                    }
                }
            }
            _ = ping.tick(), if deadline.is_none() => {
                if !write(&mut sink, Message::Ping(Default::default()), write_timeout).await {
                    metrics::counter!(m::WRITE_TIMEOUTS).increment(1);
                    break;
                }
            }
        }
    }
    drop(reader);
    let _ = tokio::time::timeout(CLOSING_GRACE, sink.close()).await;
}

struct Connection {
    conn_id: u64,
    nonce: [u8; 32],
    broker: Arc<BrokerState>,
    /// The outbound queue (shared with the session handle once
    /// authenticated) and the connection's kill switch.
    out: Outbox,
    rate: TokenBucket,
    /// `presence_set` frames have a bucket of their own: each one is copied
    /// to every other session of the mesh.
    presence_rate: TokenBucket,
    /// Where the connection comes from.
    origin: Origin,
    /// Counts this connection against its address's cap until its hello.
    pending: Option<PendingGuard>,
    /// The invite this connection proved it holds (`invite_fetch`).
    invite: Option<(Hash32, PublicKey)>,
    session: Option<Arc<SessionHandle>>,
    mesh: Option<Arc<MeshHub>>,
}

impl Connection {
    /// Queues an answer. A peer that does not read its answers until the
    /// byte budget is spent is cut off (4003), authenticated or not.
    fn send(&self, frame: Utf8Bytes) {
        let _ = self.out.push(frame);
    }

    fn send_frame(&self, frame: &BrokerFrame) {
        self.send(text(frame));
    }

    fn error(&self, req: Option<String>, code: ErrorCode, message: impl Into<String>) {
        self.send(error_text(req, code, message));
    }

    async fn run(&mut self, mut stream: futures_util::stream::SplitStream<WebSocket>) -> Flow {
        let mut shutdown = self.broker.shutdown.clone();
        if *shutdown.borrow() {
            return Flow::Close(close::GOING_AWAY, ErrorCode::ShuttingDown.as_str());
        }
        self.send_frame(&BrokerFrame::Challenge(Challenge {
            nonce: ChallengeNonce(self.nonce),
            broker_id: self.broker.config.broker_id.clone(),
            time_ms: crate::now_ms(),
            versions: SUPPORTED_VERSIONS.to_vec(),
        }));
        let hello_deadline = Instant::now() + Duration::from_millis(HELLO_TIMEOUT_MS);
        let mut idle_deadline = Instant::now() + Duration::from_millis(IDLE_TIMEOUT_MS);
        loop {
            let deadline = if self.session.is_none() {
                hello_deadline.min(idle_deadline)
            } else {
                idle_deadline
            };
            let kill = self.out.killed();
            // Live pushes overflowed this session's queue: a drain takes
            // over, at the reader's pace.
            let behind = async {
                match &self.session {
                    Some(s) => s.fell_behind().await,
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    return Flow::Close(close::GOING_AWAY, ErrorCode::ShuttingDown.as_str());
                }
                () = kill => {
                    let (code, reason) = self.out.kill_reason().unwrap_or((close::NORMAL, ""));
                    return Flow::Close(code, reason);
                }
                () = behind => {
                    if let (Some(session), Some(mesh)) = (&self.session, &self.mesh) {
                        session.catching_up();
                        wake_drain(self.broker.clone(), mesh.clone(), session.clone());
                    }
                    continue;
                }
                r = tokio::time::timeout_at(deadline.into(), stream.next()) => r,
            };
            let msg = match msg {
                Err(_elapsed) if self.session.is_none() => {
                    return Flow::Close(close::HANDSHAKE_TIMEOUT, "handshake_timeout");
                }
                Err(_elapsed) => return Flow::Close(close::NORMAL, "idle_timeout"),
                Ok(None) => return Flow::Continue,
                Ok(Some(Err(e))) => {
                    // tungstenite refuses frames over its own (larger) limit.
                    let s = e.to_string();
                    if s.contains("too long") || s.contains("Space limit") {
                        self.error(None, ErrorCode::FrameTooLarge, "frame too large");
                        return Flow::Close(close::TOO_BIG, ErrorCode::FrameTooLarge.as_str());
                    }
                    return Flow::Continue;
                }
                Ok(Some(Ok(m))) => m,
            };
            idle_deadline = Instant::now() + Duration::from_millis(IDLE_TIMEOUT_MS);
            if let Some(s) = &self.session {
                let now = crate::now_ms();
                s.touch(now);
                // A certificate that expired while connected stops here:
                // receivers judge an envelope's certificate at its
                // (sender-chosen) `sent_at`, so only this broker's clock
                // keeps an expired session key from sending. The close is
                // not terminal: the client renews the certificate and
                // reconnects.
                if now / 1000 >= s.cert.expires_at {
                    self.error(
                        None,
                        ErrorCode::CertExpired,
                        "this session's certificate has expired; reconnect with a renewed one",
                    );
                    return Flow::Close(close::NORMAL, ErrorCode::CertExpired.as_str());
                }
            }
            if self.out.is_killed() {
                let (code, reason) = self.out.kill_reason().unwrap_or((close::NORMAL, ""));
                return Flow::Close(code, reason);
            }
            let text = match msg {
                Message::Text(t) => t,
                Message::Binary(_) => {
                    self.error(None, ErrorCode::Malformed, "binary frames are not allowed");
                    return Flow::Close(close::PROTOCOL_ERROR, "binary_frame");
                }
                Message::Close(_) => return Flow::Continue,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if text.len() > MAX_FRAME_BYTES {
                self.error(
                    None,
                    ErrorCode::FrameTooLarge,
                    format!(
                        "frame is {} bytes; the limit is {MAX_FRAME_BYTES}",
                        text.len()
                    ),
                );
                return Flow::Close(close::TOO_BIG, ErrorCode::FrameTooLarge.as_str());
            }
            let member_rate = match (&self.session, &self.mesh) {
                (Some(s), Some(mesh)) => {
                    let c = &self.broker.config;
                    let limits = MemberRates {
                        frames_per_sec: c.member_rate_per_sec,
                        frames_burst: c.member_rate_burst,
                        bytes_per_sec: c.member_bytes_per_sec,
                        bytes_burst: c.member_bytes_burst,
                    };
                    mesh.take_member_token(&s.member, &limits, text.len())
                }
                _ => Ok(()),
            };
            if let Err(wait) = self.rate.take().and(member_rate) {
                metrics::counter!(m::RATE_LIMITED).increment(1);
                self.send_frame(&BrokerFrame::Error(claudemesh_proto::frames::ErrorFrame {
                    req: claudemesh_proto::codec::salvage_req(text.as_str()),
                    code: ErrorCode::RateLimited,
                    message: "too many frames; slow down".into(),
                    retry_after_ms: Some(wait),
                }));
                continue;
            }
            let frame = match claudemesh_proto::decode_client_frame(text.as_str()) {
                Ok(f) => f,
                Err(e) => {
                    let req = claudemesh_proto::codec::salvage_req(text.as_str());
                    self.send_frame(&e.to_error_frame(req));
                    if matches!(e, FrameError::TooLarge { .. }) {
                        return Flow::Close(close::TOO_BIG, ErrorCode::FrameTooLarge.as_str());
                    }
                    continue;
                }
            };
            let flow = if self.session.is_some() {
                self.handle_authenticated(frame).await
            } else {
                self.handle_unauthenticated(frame).await
            };
            if let Flow::Close(code, reason) = flow {
                return Flow::Close(code, reason);
            }
        }
    }

    /// Leaves the mesh's presence and closes the socket.
    async fn finish(&mut self, code: u16, reason: &'static str) {
        if let (Some(session), Some(mesh)) = (self.session.take(), self.mesh.take()) {
            let last_alone = mesh.remove_session(&session);
            let replication = self.broker.hub.replication();
            if let Some(r) = replication {
                r.session_down(&session);
            }
            let now = crate::now_ms();
            let p = session.presence();
            // With replicas, the member may still be connected to another.
            let elsewhere = replication.is_some() && mesh.has_remote(&session.member);
            let member_now = mesh.read_log(|l| l.roster.is_member(&session.member));
            let member_stays = !last_alone || elsewhere;
            if member_now {
                // The member's last session here: its last presence is kept
                // for `peers` while it is offline.
                if !member_stays {
                    let state = MemberState {
                        status: p.status,
                        peer_type: p.peer_type,
                        summary: p.summary.clone(),
                        last_seen_ms: now,
                    };
                    mesh.set_member_state(session.member, state.clone());
                    self.broker
                        .member_states
                        .save(mesh.id, session.member, state);
                }
                // This session is announced gone either way (peers drop it;
                // the coalescing slot of every other session replaces its
                // last presence with this). While another session of the
                // member stays, its summary is not repeated.
                mesh.broadcast_presence(
                    claudemesh_proto::frames::PeerPresence {
                        member: session.member,
                        session: Some(session.session),
                        cert: None,
                        online: false,
                        status: p.status,
                        peer_type: p.peer_type,
                        summary: if member_stays { None } else { p.summary },
                        connected_at_ms: None,
                        last_seen_ms: Some(now),
                        live_push: false,
                    },
                    self.conn_id,
                );
            }
        }
        if code == close::GOING_AWAY {
            // Shutdown: everything this connection sent is committed (and its
            // `accepted` queued) before the close goes out.
            self.broker.flushed.clone().wait_for(|f| *f).await.ok();
        }
        // Never waits for room: a peer that stopped reading must not hold
        // this task (and its memory) open. The socket task writes what is
        // queued for a short grace, then closes.
        self.out.close(code, reason);
        self.out.kill(code, reason);
    }

    async fn handle_unauthenticated(&mut self, frame: ClientFrame) -> Flow {
        match frame {
            ClientFrame::Hello(h) => self.hello(*h).await,
            ClientFrame::InviteFetch(f) => {
                self.invite_fetch(f).await;
                Flow::Continue
            }
            ClientFrame::InviteJoin(f) => {
                self.invite_join(f).await;
                Flow::Continue
            }
            ClientFrame::MeshCreate(f) => {
                self.mesh_create(f).await;
                Flow::Continue
            }
            ClientFrame::Ping(r) => {
                self.pong(r.req);
                Flow::Continue
            }
            // A joiner that proved it holds an invite may read the whole log
            // before it signs its admit (the admit must chain to the head).
            ClientFrame::LogFetch(f) if self.invite.is_some() => {
                let mesh_id = self.invite.map(|(m, _)| m).unwrap_or_default();
                if let Some(mesh) = self.load_mesh(&mesh_id, &f.req).await {
                    self.send_frame(&log_entries(&mesh, f));
                }
                Flow::Continue
            }
            other => {
                self.error(
                    other.req().map(str::to_owned),
                    ErrorCode::NotAuthenticated,
                    "send hello first",
                );
                Flow::Continue
            }
        }
    }

    fn pong(&self, req: Option<String>) {
        self.send_frame(&BrokerFrame::Pong(Pong {
            req,
            time_ms: crate::now_ms(),
        }));
    }

    async fn hello(&mut self, hello: Hello) -> Flow {
        let refuse = |this: &Self, code: ErrorCode, message: String| {
            metrics::counter!(m::HANDSHAKES, "result" => code.as_str()).increment(1);
            this.error(None, code, message);
            let close = code.close_code().unwrap_or(close::POLICY);
            Flow::Close(close, code.as_str())
        };
        if !SUPPORTED_VERSIONS.contains(&hello.version) {
            return refuse(
                self,
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not spoken here; this broker speaks {SUPPORTED_VERSIONS:?}",
                    hello.version
                ),
            );
        }
        let mesh = match self.broker.hub.mesh(&hello.mesh_id).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return refuse(
                    self,
                    ErrorCode::UnknownMesh,
                    format!("this broker has no mesh {}", short_hash(&hello.mesh_id)),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "loading mesh failed");
                self.error(
                    None,
                    ErrorCode::Internal,
                    "the broker could not load the mesh",
                );
                return Flow::Continue;
            }
        };
        let now_secs = crate::now_ms() / 1000;
        if let Err(e) = hello.verify(&self.nonce, now_secs) {
            let (code, msg) = match e {
                HelloError::BadSignature => (
                    ErrorCode::BadSignature,
                    "hello signature does not verify for this connection's challenge".to_owned(),
                ),
                HelloError::Certificate(CertError::Expired { .. }) => {
                    (ErrorCode::CertExpired, e.to_string())
                }
                HelloError::Certificate(_) => (ErrorCode::BadCertificate, e.to_string()),
                HelloError::TooLarge(_) => (ErrorCode::Malformed, e.to_string()),
            };
            if code == ErrorCode::BadSignature {
                metrics::counter!(m::HANDSHAKES, "result" => code.as_str()).increment(1);
                self.error(None, code, msg);
                return Flow::Close(close::POLICY, code.as_str());
            }
            return refuse(self, code, msg);
        }
        let member = hello.cert.member;
        // A member who joined through another replica a moment ago: adopt
        // the entries it appended (verified) before refusing.
        if !mesh.read_log(|l| l.roster.is_member(&member)) {
            self.caught_up(&mesh).await;
        }
        // Read under the lock rather than cloning the roster: a handshake
        // only needs a few lookups, and a big mesh's roster is large.
        let admitted = mesh.read_log(|l| {
            let roster = &l.roster;
            if roster.is_member(&member) {
                return Ok((roster.head(), roster.len()));
            }
            Err(match roster.departed().get(&member).map(|d| d.how) {
                Some(RemoveKind::Ban) => (ErrorCode::Banned, "this member is banned"),
                Some(RemoveKind::Kick | RemoveKind::Leave) if roster.banned().contains(&member) => {
                    (ErrorCode::Banned, "this member is banned")
                }
                Some(RemoveKind::Kick | RemoveKind::Leave) => (
                    ErrorCode::Removed,
                    "this member was removed from the mesh; rejoin with a new invite",
                ),
                None => (
                    ErrorCode::NotAMember,
                    "this key is not a member of the mesh; join with an invite",
                ),
            })
        });
        let (log_head, log_len) = match admitted {
            Ok(at) => at,
            Err((code, msg)) => return refuse(self, code, msg.to_owned()),
        };
        let now = crate::now_ms();
        let presence = SessionPresence {
            status: hello.presence.status,
            peer_type: hello.presence.peer_type,
            summary: hello.presence.summary.clone(),
        };
        let handle = Arc::new(SessionHandle::new(
            self.conn_id,
            mesh.id,
            hello.cert.clone(),
            self.out.clone(),
            presence,
            now,
        ));
        let config = &self.broker.config;
        let limits = Limits {
            rate_per_sec: config.rate_per_sec,
            rate_burst: config.rate_burst,
            member_rate_per_sec: config.member_rate_per_sec,
            member_rate_burst: config.member_rate_burst,
            member_bytes_per_sec: config.member_bytes_per_sec,
            max_sessions_per_member: u32::try_from(config.max_sessions_per_member)
                .unwrap_or(u32::MAX),
            ..Limits::default()
        };
        let welcome = text(&BrokerFrame::Welcome(Box::new(Welcome {
            member,
            session: hello.cert.session,
            log_head,
            log_len,
            limits,
            time_ms: now,
        })));
        // Welcome goes into the queue before the session is visible to the
        // mesh, so no other session's presence can reach this client first;
        // both happen under the mesh's session lock with the per-member cap.
        if let Err(connected) =
            mesh.admit_session(handle.clone(), config.max_sessions_per_member, welcome)
        {
            metrics::counter!(m::CAPPED, "cap" => "sessions_per_member").increment(1);
            return refuse(
                self,
                ErrorCode::TooManySessions,
                format!(
                    "this member already has {connected} sessions connected to this broker (at \
                     most {}); close one or retry later",
                    config.max_sessions_per_member
                ),
            );
        }
        metrics::counter!(m::HANDSHAKES, "result" => "ok").increment(1);
        // The address's count of connections waiting for a hello drops.
        self.pending = None;
        self.session = Some(handle.clone());
        self.mesh = Some(mesh.clone());
        mesh.broadcast_presence(handle.as_peer(), self.conn_id);
        if let Some(r) = self.broker.hub.replication() {
            r.session_up(&handle);
        }
        if mesh.first_sight_of(&hello.cert.session) {
            // Group-committed with messages: only a message to this session
            // sent while it is offline needs the row, and while it is
            // connected the hub knows it.
            self.broker
                .writer
                .submit(WriteJob::Session(Box::new(SessionRecord {
                    mesh: mesh.id,
                    session: hello.cert.session,
                    member,
                    at_ms: now,
                })))
                .await;
        }
        // The first drain runs before this connection's next frame is read,
        // so anything the client asks after `welcome` is answered after every
        // queued message: a `ping` marks the end of the backlog.
        drain(&self.broker, &mesh, &handle).await;
        Flow::Continue
    }

    async fn mesh_create(&mut self, f: claudemesh_proto::frames::MeshCreate) {
        if let Err(why) = self.may_create_mesh(f.token.as_deref()) {
            self.error(f.req, ErrorCode::Forbidden, why);
            return;
        }
        let roster = match Roster::from_genesis(&f.genesis) {
            Ok(r) => r,
            Err(e) => {
                self.error(f.req, ErrorCode::LogInvalid, e.to_string());
                return;
            }
        };
        let mesh_id = roster.mesh_id();
        match self
            .broker
            .store
            .create_mesh(&f.genesis, mesh_id, crate::now_ms())
            .await
        {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "creating mesh failed");
                self.error(
                    f.req,
                    ErrorCode::Internal,
                    "the broker could not store the mesh",
                );
                return;
            }
        }
        if let Some(m) = self.load_mesh(&mesh_id, &f.req).await {
            let r = m.roster();
            self.send_frame(&BrokerFrame::LogAppended(LogAppended {
                req: f.req,
                head: r.head(),
                len: r.len(),
            }));
        }
    }

    /// Whether this connection may register a mesh: the operator's token
    /// opens it from anywhere; otherwise the broker's policy (by default only
    /// connections from this machine).
    fn may_create_mesh(&self, token: Option<&str>) -> Result<(), &'static str> {
        let config = &self.broker.config;
        if let (Some(expected), Some(offered)) = (&config.mesh_create_token, token)
            && expected.matches(offered)
        {
            return Ok(());
        }
        let allowed = match config.allow_mesh_create {
            MeshCreatePolicy::Anyone => true,
            MeshCreatePolicy::Local => self.origin.local,
            MeshCreatePolicy::Nobody => false,
        };
        match (allowed, token.is_some(), config.mesh_create_token.is_some()) {
            (true, _, _) => Ok(()),
            (false, true, _) => Err("this broker's mesh-creation token is not the one given"),
            (false, false, true) => Err(
                "this broker creates meshes only for holders of its mesh-creation token \
                 (claudemesh mesh create --create-token <token>)",
            ),
            (false, false, false) => Err(
                "this broker does not create meshes for remote clients; ask its operator \
                 (claudemesh-broker --allow-mesh-create anyone, or a mesh-creation token)",
            ),
        }
    }

    async fn invite_fetch(&mut self, f: claudemesh_proto::frames::InviteFetch) {
        if verify_invite_proof(&f.invite_key, &self.nonce, &f.proof).is_err() {
            self.error(
                f.req,
                ErrorCode::BadSignature,
                "invite proof does not verify for this connection's challenge",
            );
            return;
        }
        let found = match self.broker.store.invite_bundle(&f.invite_key).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "invite lookup failed");
                self.error(
                    f.req,
                    ErrorCode::Internal,
                    "the broker could not look up the invite",
                );
                return;
            }
        };
        let Some((mesh_id, bundle)) = found else {
            self.error(
                f.req,
                ErrorCode::InviteNotFound,
                "no such invite on this broker",
            );
            return;
        };
        let Some(mesh) = self.load_mesh(&mesh_id, &f.req).await else {
            return;
        };
        // An invite made through another replica a moment ago.
        if !mesh.read_log(|l| l.roster.invites().contains_key(&f.invite_key)) {
            self.caught_up(&mesh).await;
        }
        let (log, log_len, state) = mesh.read_log(|l| {
            (
                entries_within_budget(&l.entries, MAX_LOG_ENTRIES_PER_FRAME),
                l.roster.len(),
                l.roster.invites().get(&f.invite_key).cloned(),
            )
        });
        let Some(state) = state else {
            self.error(
                f.req,
                ErrorCode::InviteNotFound,
                "no such invite on this broker",
            );
            return;
        };
        if let Err((code, msg)) = invite_usable(&state, crate::now_ms() / 1000) {
            self.error(f.req, code, msg);
            return;
        }
        self.invite = Some((mesh_id, f.invite_key));
        self.send_frame(&BrokerFrame::InviteBundle(InviteBundle {
            req: f.req,
            mesh_id,
            bundle,
            log,
            log_len,
        }));
    }

    async fn invite_join(&mut self, f: claudemesh_proto::frames::InviteJoin) {
        let Some((mesh_id, invite_key)) = self.invite else {
            self.error(
                f.req,
                ErrorCode::Forbidden,
                "fetch the invite (invite_fetch) on this connection first",
            );
            return;
        };
        let EntryBody::Admit {
            invite_key: used, ..
        } = &f.entry.body
        else {
            self.error(
                f.req,
                ErrorCode::Malformed,
                "invite_join carries an admit entry",
            );
            return;
        };
        if *used != invite_key {
            self.error(
                f.req,
                ErrorCode::Forbidden,
                "the admit names another invite than the one fetched",
            );
            return;
        }
        let Some(mesh) = self.load_mesh(&mesh_id, &f.req).await else {
            return;
        };
        // The log checks the admit's own date; the broker also holds the
        // invite to its expiry by its own clock, which the joiner cannot set.
        if let Some(state) = mesh.roster().invites().get(&invite_key).cloned()
            && let Err((code, msg)) = invite_usable(&state, crate::now_ms() / 1000)
        {
            self.error(f.req, code, msg);
            return;
        }
        let extras = AppendExtras {
            new_invite: None,
            used_invite: Some(invite_key),
        };
        match mesh
            .append(
                self.broker.store.as_ref(),
                vec![f.entry],
                extras,
                None,
                self.append_limits(),
            )
            .await
        {
            Ok((head, len)) => {
                if let Some(r) = self.broker.hub.replication() {
                    r.log_grew(mesh.id, len);
                }
                self.send_frame(&BrokerFrame::Joined(Joined {
                    req: f.req,
                    head,
                    len,
                }))
            }
            Err(e) => self.append_error(f.req, e),
        }
    }

    /// The mesh, or `None` after answering `internal` (the store failed).
    async fn load_mesh(&self, id: &Hash32, req: &Option<String>) -> Option<Arc<MeshHub>> {
        match self.broker.hub.mesh(id).await {
            Ok(Some(m)) => Some(m),
            Ok(None) => {
                self.error(req.clone(), ErrorCode::UnknownMesh, "no such mesh");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "loading mesh failed");
                self.error(
                    req.clone(),
                    ErrorCode::Internal,
                    "the broker could not load the mesh",
                );
                None
            }
        }
    }

    /// With replicas: adopts log entries other brokers appended; returns
    /// whether there were any (without replicas: false, nothing to read).
    /// Anyone can ask for this (a hello from a key no one admitted, a send
    /// to a made-up member), and it reads the store under the mesh's append
    /// lock, so it runs at most once per [`CATCH_UP_INTERVAL_MS`] per mesh:
    /// callers queue, and one whose request a later catch-up already covered
    /// does not read again (it answers true: look again).
    async fn caught_up(&self, mesh: &MeshHub) -> bool {
        let Some(r) = self.broker.hub.replication() else {
            return false;
        };
        let asked = crate::now_ms();
        let mut last = mesh.catch_up_gate().await;
        if *last >= asked {
            return true;
        }
        let wait = (*last + CATCH_UP_INTERVAL_MS).saturating_sub(asked);
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        metrics::counter!(m::LOG_CATCH_UPS).increment(1);
        let grew = r.catch_up_log(mesh).await;
        *last = crate::now_ms();
        grew
    }

    /// Appends verified entries and answers `log_appended` or the error.
    async fn append_and_answer(
        &self,
        mesh: &MeshHub,
        req: Option<String>,
        entries: Vec<LogEntry>,
        extras: AppendExtras,
    ) {
        let me = self.session.as_ref().map(|s| (s.member, s.clone()));
        let removes_me = |entries: &[LogEntry]| {
            entries.iter().find_map(|e| match (&e.body, &me) {
                (EntryBody::Remove { member, how }, Some((mine, _))) if member == mine => {
                    Some(*how)
                }
                _ => None,
            })
        };
        let my_removal = removes_me(&entries);
        match mesh
            .append(
                self.broker.store.as_ref(),
                entries,
                extras,
                Some(self.conn_id),
                self.append_limits(),
            )
            .await
        {
            Ok((head, len)) => {
                if let Some(r) = self.broker.hub.replication() {
                    r.log_grew(mesh.id, len);
                }
                self.send_frame(&BrokerFrame::LogAppended(LogAppended { req, head, len }));
                // This connection's member removed itself (or was removed in
                // its own batch): close after the answer it is waiting for.
                if let (Some(how), Some((_, session))) = (my_removal, &me) {
                    let (code, reason) = match how {
                        RemoveKind::Ban => (close::BANNED, ErrorCode::Banned.as_str()),
                        RemoveKind::Kick | RemoveKind::Leave => {
                            (close::KICKED, ErrorCode::Removed.as_str())
                        }
                    };
                    session.kill(code, reason);
                }
            }
            Err(e) => self.append_error(req, e),
        }
    }

    fn append_error(&self, req: Option<String>, e: AppendError) {
        if let AppendError::Store(s) = &e {
            tracing::error!(error = %s, "log append failed");
        }
        if e.code() == ErrorCode::RateLimited {
            metrics::counter!(m::RATE_LIMITED).increment(1);
        }
        self.send_frame(&BrokerFrame::Error(claudemesh_proto::frames::ErrorFrame {
            req,
            code: e.code(),
            message: e.to_string(),
            retry_after_ms: e.retry_after_ms(),
        }));
    }

    /// This broker's limits on appends, as configured, at its clock now.
    fn append_limits(&self) -> AppendLimits {
        let c = &self.broker.config;
        AppendLimits {
            entries_per_hour: c.log_entries_per_hour,
            burst: c.log_burst,
            bytes_per_hour: c.log_bytes_per_hour,
            max_log_bytes: c.max_log_bytes,
            now_secs: crate::now_ms() / 1000,
        }
    }

    async fn handle_authenticated(&mut self, frame: ClientFrame) -> Flow {
        let (Some(session), Some(mesh)) = (self.session.clone(), self.mesh.clone()) else {
            return Flow::Continue;
        };
        match frame {
            ClientFrame::Hello(_) => {
                self.error(
                    None,
                    ErrorCode::AlreadyAuthenticated,
                    "already authenticated",
                );
            }
            ClientFrame::Send(f) => self.send_message(&session, &mesh, f).await,
            ClientFrame::Ack(a) => self.ack(&session, &mesh, a).await,
            ClientFrame::PresenceSet(p) => self.presence_set(&session, &mesh, p),
            ClientFrame::PeerList(q) => {
                let (peers, next) = peers_page(mesh.peers(&session.member), q.after.as_deref());
                self.send_frame(&BrokerFrame::Peers(Peers {
                    req: q.req,
                    peers,
                    next,
                }))
            }
            ClientFrame::LogFetch(f) => self.send_frame(&log_entries(&mesh, f)),
            ClientFrame::LogAppend(f) => {
                self.append_and_answer(&mesh, f.req, f.entries, AppendExtras::default())
                    .await;
            }
            ClientFrame::InviteCreate(f) => {
                let EntryBody::Invite { invite_key, .. } = &f.entry.body else {
                    self.error(
                        f.req,
                        ErrorCode::Malformed,
                        "invite_create carries an invite entry",
                    );
                    return Flow::Continue;
                };
                if f.bundle.len() > MAX_BUNDLE_BYTES {
                    self.error(f.req, ErrorCode::Malformed, "welcome bundle is too large");
                    return Flow::Continue;
                }
                let extras = AppendExtras {
                    new_invite: Some((*invite_key, f.bundle)),
                    used_invite: None,
                };
                self.append_and_answer(&mesh, f.req, vec![f.entry], extras)
                    .await;
            }
            ClientFrame::InviteFetch(f) => {
                self.error(
                    f.req,
                    ErrorCode::AlreadyAuthenticated,
                    "already a member here",
                );
            }
            ClientFrame::InviteJoin(f) => {
                self.error(
                    f.req,
                    ErrorCode::AlreadyAuthenticated,
                    "already a member here",
                );
            }
            ClientFrame::MeshCreate(f) => self.mesh_create(f).await,
            ClientFrame::TopicHistory(q) => self.topic_history(&session, &mesh, q).await,
            ClientFrame::MessageStatus(q) => {
                match self
                    .broker
                    .store
                    .message_status(&mesh.id, &session.member, &q.id)
                    .await
                {
                    Ok(Some(st)) => {
                        let recipients = match &st.fanout {
                            Some(f) => match f.target.parse::<Target>() {
                                Ok(target) => mesh.read_log(|l| {
                                    crate::fanout::fanout_status(
                                        &l.roster,
                                        &session.member,
                                        &target,
                                        f.at_len,
                                        f.expired,
                                        &st,
                                    )
                                }),
                                Err(_) => Vec::new(),
                            },
                            None => st.recipients.clone(),
                        };
                        // In pages by recipient key: a broadcast's status
                        // lists every member it was for.
                        let mut recipients: Vec<RecipientStatus> = recipients
                            .into_iter()
                            .filter(|(k, _)| q.after.is_none_or(|a| *k > a))
                            .map(|(recipient, state)| RecipientStatus { recipient, state })
                            .collect();
                        recipients.sort_by_key(|r| r.recipient);
                        let next = (recipients.len() > STATUS_PAGE)
                            .then(|| recipients[STATUS_PAGE - 1].recipient);
                        recipients.truncate(STATUS_PAGE);
                        self.send_frame(&BrokerFrame::MessageStatusResult(MessageStatusResult {
                            req: q.req,
                            id: q.id,
                            seq: st.seq,
                            recipients,
                            next,
                        }))
                    }
                    Ok(None) => self.error(
                        q.req,
                        ErrorCode::NotFound,
                        format!("no message {} sent by this member", q.id),
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "message status failed");
                        self.error(
                            q.req,
                            ErrorCode::Internal,
                            "the broker could not look it up",
                        );
                    }
                }
            }
            ClientFrame::GrantsSet(f) => {
                match mesh
                    .set_grants(&*self.broker.store, &session.member, *f.grants)
                    .await
                {
                    Ok(version) => {
                        if let Some(r) = self.broker.hub.replication() {
                            r.grants_changed(mesh.id, session.member);
                        }
                        self.send_frame(&BrokerFrame::GrantsStored(GrantsStored {
                            req: f.req,
                            version,
                        }))
                    }
                    Err(e) => {
                        if let GrantsSetError::Store(err) = &e {
                            tracing::error!(error = %err, "storing grants failed");
                        }
                        self.error(f.req, e.code(), e.to_string());
                    }
                }
            }
            ClientFrame::Ping(r) => self.pong(r.req),
        }
        Flow::Continue
    }

    async fn send_message(
        &self,
        session: &Arc<SessionHandle>,
        mesh: &Arc<MeshHub>,
        f: claudemesh_proto::frames::Send,
    ) {
        let env = f.envelope;
        let req = f.req;
        if env.mesh != mesh.id {
            self.error(
                req,
                ErrorCode::Forbidden,
                "the envelope is for another mesh",
            );
            return;
        }
        if env.sender.session != session.session || env.sender.member != session.member {
            self.error(
                req,
                ErrorCode::Forbidden,
                "the envelope's sender is not this connection's session",
            );
            return;
        }
        if env.v != claudemesh_crypto::envelope::ENVELOPE_VERSION {
            self.error(
                req,
                ErrorCode::Malformed,
                format!("envelope version {} is not supported", env.v),
            );
            return;
        }
        let max_ct = claudemesh_proto::limits::MAX_BODY_BYTES + claudemesh_crypto::boxes::MAC_BYTES;
        if env.ciphertext.len() > max_ct {
            self.error(
                req,
                ErrorCode::BodyTooLarge,
                format!(
                    "the body is larger than {} bytes",
                    claudemesh_proto::limits::MAX_BODY_BYTES
                ),
            );
            return;
        }
        let mut at_len = None;
        let recipients = match &env.target {
            Target::Member(k) => {
                let is_member = || mesh.read_log(|l| l.roster.is_member(k));
                // A member who joined through another replica a moment ago.
                let known = is_member() || (self.caught_up(mesh).await && is_member());
                if !known {
                    self.error(
                        req,
                        ErrorCode::UnknownRecipient,
                        format!("{} is not a member of this mesh", short_key(k)),
                    );
                    return;
                }
                match mesh.grant_decision(k, &session.member, Cap::Dm) {
                    Decision::Allow => vec![*k],
                    Decision::Refuse => {
                        self.error(req, ErrorCode::Refused, REFUSED_BY_GRANTS);
                        return;
                    }
                    // Stored and accepted, but for no one: never delivered.
                    Decision::SilentDrop => Vec::new(),
                }
            }
            Target::Session(s) => {
                let here = mesh
                    .session(s)
                    .map(|h| h.member)
                    .or_else(|| mesh.remote_member_of(s));
                let member = match here {
                    Some(m) => Some(m),
                    None => match self.broker.store.session_member(&mesh.id, s).await {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(error = %e, "session lookup failed");
                            self.error(req, ErrorCode::Internal, "the broker could not route it");
                            return;
                        }
                    },
                };
                match member {
                    Some(m) if mesh.read_log(|l| l.roster.is_member(&m)) => {
                        match mesh.grant_decision(&m, &session.member, Cap::Dm) {
                            Decision::Allow => vec![*s],
                            Decision::Refuse => {
                                self.error(req, ErrorCode::Refused, REFUSED_BY_GRANTS);
                                return;
                            }
                            Decision::SilentDrop => Vec::new(),
                        }
                    }
                    _ => {
                        self.error(
                            req,
                            ErrorCode::UnknownRecipient,
                            format!("no session {} of a current member", short_key(s)),
                        );
                        return;
                    }
                }
            }
            target @ (Target::Group(_) | Target::Topic(_) | Target::Broadcast) => {
                let route = || {
                    mesh.read_log(|l| {
                        crate::fanout::route(&l.roster, &session.member, target, env.epoch)
                    })
                };
                let mut routed = route();
                // A topic, group member or rekey another replica added a
                // moment ago: adopt it and route again.
                if routed.is_err() && self.caught_up(mesh).await {
                    routed = route();
                }
                match routed {
                    Ok((members, len)) => {
                        at_len = Some(len);
                        // Recipients whose grants refuse the sender this
                        // kind of message are skipped, silently.
                        let cap = Cap::for_target(&target.to_string());
                        members
                            .into_iter()
                            .filter(|m| mesh.grants_allow(m, &session.member, cap))
                            .collect()
                    }
                    Err((code, message)) => {
                        self.error(req, code, message);
                        return;
                    }
                }
            }
        };
        let now = crate::now_ms();
        let retention = u64::try_from(self.broker.config.retention.as_millis()).unwrap_or(u64::MAX);
        let msg = NewMessage {
            mesh: mesh.id,
            sender_member: session.member,
            id: env.id,
            target: env.target.to_string(),
            priority: env.priority,
            envelope_json: serde_json::to_string(&*env).unwrap_or_default(),
            recipients,
            at_len,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(retention),
        };
        let reply = AcceptReply {
            session: session.clone(),
            req,
        };
        if !self
            .broker
            .writer
            .submit(WriteJob::Message(Box::new(msg), Some(reply)))
            .await
        {
            self.error(None, ErrorCode::ShuttingDown, "the broker is stopping");
        }
    }

    async fn topic_history(
        &self,
        session: &Arc<SessionHandle>,
        mesh: &Arc<MeshHub>,
        q: TopicHistoryQuery,
    ) {
        if claudemesh_crypto::envelope::validate_target_name(&q.topic).is_err() {
            self.error(
                q.req,
                ErrorCode::Malformed,
                "a topic name is 1-64 of A-Z a-z 0-9 . _ - / (without #)",
            );
            return;
        }
        let allowed = mesh.read_log(|l| match l.roster.topic(&q.topic) {
            None => Err((
                ErrorCode::UnknownRecipient,
                format!("there is no topic #{} in this mesh", q.topic),
            )),
            Some(t) if t.private && !t.members.contains_key(&session.member) => Err((
                ErrorCode::Forbidden,
                format!("#{} is private and you are not a member of it", q.topic),
            )),
            Some(_) => Ok(()),
        });
        if let Err((code, message)) = allowed {
            self.error(q.req, code, message);
            return;
        }
        let limit = q
            .limit
            .unwrap_or(DEFAULT_HISTORY_PAGE)
            .clamp(1, MAX_HISTORY_PAGE);
        let target = format!("#{}", q.topic);
        let rows = match self
            .broker
            .store
            .fanout_history(
                &mesh.id,
                &target,
                q.before_seq.unwrap_or(u64::MAX),
                PageLimit {
                    rows: limit + 1,
                    bytes: HISTORY_BYTES_PER_FRAME as u64,
                },
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "reading topic history failed");
                self.error(
                    q.req,
                    ErrorCode::Internal,
                    "the broker could not read the history",
                );
                return;
            }
        };
        // At most `limit` messages and at most a frame's worth of bytes
        // (always at least one): 200 stored envelopes of 64 KiB would
        // otherwise be a 17 MB answer. `more` says the client asks again.
        let weighed: u64 = rows.iter().map(|p| p.envelope_json.len() as u64).sum();
        let mut more = rows.len() > limit as usize || weighed >= HISTORY_BYTES_PER_FRAME as u64;
        let mut bytes = 0;
        let mut messages = Vec::new();
        for p in rows.into_iter().take(limit as usize) {
            let size = p.envelope_json.len() + DELIVER_OVERHEAD_BYTES;
            if !messages.is_empty() && bytes + size > HISTORY_BYTES_PER_FRAME {
                more = true;
                break;
            }
            match serde_json::from_str(&p.envelope_json) {
                Ok(envelope) => {
                    bytes += size;
                    messages.push(Deliver {
                        seq: p.seq,
                        envelope: Box::new(envelope),
                        queued_at_ms: p.queued_at_ms,
                    });
                }
                Err(e) => {
                    tracing::error!(seq = p.seq, error = %e, "a stored envelope does not parse");
                }
            }
        }
        self.send_frame(&BrokerFrame::TopicHistoryResult(TopicHistoryResult {
            req: q.req,
            topic: q.topic,
            messages,
            more,
        }));
    }

    async fn ack(&self, session: &Arc<SessionHandle>, mesh: &Arc<MeshHub>, a: Ack) {
        if a.seqs.len() > MAX_IDS_PER_ACK {
            self.error(
                None,
                ErrorCode::Malformed,
                format!("at most {MAX_IDS_PER_ACK} seqs per ack"),
            );
            return;
        }
        if a.seqs.is_empty() {
            return;
        }
        let op = AckOp {
            mesh: mesh.id,
            member: session.member,
            session: session.session,
            seqs: a.seqs,
            state: if a.read {
                DeliveryState::Read
            } else {
                DeliveryState::Delivered
            },
            at_ms: crate::now_ms(),
            fanout_targets: mesh
                .read_log(|l| crate::fanout::member_targets(&l.roster, &session.member)),
        };
        self.broker.writer.submit(WriteJob::Ack(Box::new(op))).await;
    }

    /// A presence change: applied to the session, pushed (coalesced) to the
    /// mesh's other sessions, saved (coalesced) by the state saver. Each
    /// costs a frame for every other session, so it has its own rate.
    fn presence_set(&mut self, session: &Arc<SessionHandle>, mesh: &Arc<MeshHub>, p: PresenceSet) {
        if p.summary
            .as_ref()
            .is_some_and(|s| s.ciphertext.len() > MAX_SUMMARY_CIPHERTEXT_BYTES)
        {
            self.error(p.req, ErrorCode::Malformed, "summary is too large");
            return;
        }
        if let Err(wait) = self.presence_rate.take() {
            metrics::counter!(m::RATE_LIMITED).increment(1);
            self.send_frame(&BrokerFrame::Error(claudemesh_proto::frames::ErrorFrame {
                req: p.req,
                code: ErrorCode::RateLimited,
                message: format!(
                    "at most {PRESENCE_RATE_PER_SEC} presence changes per second; this one was \
                     not applied"
                ),
                retry_after_ms: Some(wait),
            }));
            return;
        }
        let before = session.presence().status;
        let now_p = session.update_presence(p.status, p.peer_type, p.summary);
        let state = MemberState {
            status: now_p.status,
            peer_type: now_p.peer_type,
            summary: now_p.summary.clone(),
            last_seen_ms: crate::now_ms(),
        };
        mesh.set_member_state(session.member, state.clone());
        mesh.broadcast_presence(session.as_peer(), self.conn_id);
        if let Some(r) = self.broker.hub.replication() {
            r.session_changed(session);
        }
        self.broker
            .member_states
            .save(mesh.id, session.member, state);
        let became_idle = before != claudemesh_proto::frames::Status::Idle
            && now_p.status == claudemesh_proto::frames::Status::Idle;
        if became_idle {
            // Messages held while busy go out now (one drain at a time).
            wake_drain(self.broker.clone(), mesh.clone(), session.clone());
        }
    }
}

/// Bytes of log entries one frame carries at most: half a frame, so the
/// rest of the frame (an invite bundle, JSON framing) always fits.
const LOG_BYTES_PER_FRAME: usize = claudemesh_proto::limits::MAX_FRAME_BYTES / 2;

/// The first entries of `entries`, at most `max` of them and at most
/// [`LOG_BYTES_PER_FRAME`] of JSON (always at least one): a big mesh's log
/// is sent in as many frames as it takes, never in one that is refused.
fn entries_within_budget(entries: &[LogEntry], max: usize) -> Vec<LogEntry> {
    let mut bytes = 0;
    let mut out = Vec::new();
    for e in entries.iter().take(max) {
        let size = serde_json::to_string(e).map_or(0, |j| j.len());
        if !out.is_empty() && bytes + size > LOG_BYTES_PER_FRAME {
            break;
        }
        bytes += size;
        out.push(e.clone());
    }
    out
}

/// Answers a `log_fetch` from the mesh's verified log in memory.
fn log_entries(mesh: &MeshHub, f: claudemesh_proto::frames::LogFetch) -> BrokerFrame {
    let limit = f
        .limit
        .map(|l| l as usize)
        .unwrap_or(MAX_LOG_ENTRIES_PER_FRAME)
        .clamp(1, MAX_LOG_ENTRIES_PER_FRAME);
    BrokerFrame::LogEntries(mesh.read_log(|l| {
        let from = usize::try_from(f.from_seq)
            .unwrap_or(usize::MAX)
            .min(l.entries.len());
        let entries = entries_within_budget(&l.entries[from..], limit);
        let more = from + entries.len() < l.entries.len();
        LogEntries {
            req: f.req,
            entries,
            head: l.roster.head(),
            len: l.roster.len(),
            more,
        }
    }))
}

/// Bytes of peer entries one `peers` frame carries at most.
const PEERS_BYTES_PER_FRAME: usize = claudemesh_proto::limits::MAX_FRAME_BYTES / 2;

/// A peer's place in the `peers` order, and the `after`/`next` cursor
/// naming it: `<member hex>/<session hex>`, or `<member hex>/-` for a
/// member's entry without a session.
fn peer_cursor(p: &PeerPresence) -> String {
    match &p.session {
        Some(s) => format!("{}/{}", p.member.to_hex(), s.to_hex()),
        None => format!("{}/-", p.member.to_hex()),
    }
}

/// One page of `peers`: the entries after the cursor `after` in (member,
/// session) order, as many as fit half a frame (always at least one), and
/// the cursor of the last one if more follow. One member with hundreds of
/// sessions and long summaries can no longer make an answer no client
/// accepts.
fn peers_page(all: Vec<PeerPresence>, after: Option<&str>) -> (Vec<PeerPresence>, Option<String>) {
    let mut keyed: Vec<(String, PeerPresence)> =
        all.into_iter().map(|p| (peer_cursor(&p), p)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let start = after.map_or(0, |a| keyed.partition_point(|(k, _)| k.as_str() <= a));
    let mut page = Vec::new();
    let mut bytes = 0;
    let mut last = None;
    let mut rest = keyed.into_iter().skip(start).peekable();
    while let Some((key, p)) = rest.peek() {
        let size = serde_json::to_string(p).map_or(0, |j| j.len()) + 1;
        if !page.is_empty() && bytes + size > PEERS_BYTES_PER_FRAME {
            break;
        }
        bytes += size;
        last = Some(key.clone());
        if let Some((_, p)) = rest.next() {
            page.push(p);
        }
    }
    let next = if rest.peek().is_some() { last } else { None };
    (page, next)
}

/// Whether an invite can still admit someone at `now_secs` (broker clock).
fn invite_usable(
    state: &claudemesh_crypto::log::InviteState,
    now_secs: u64,
) -> Result<(), (ErrorCode, String)> {
    if state.revoked_at.is_some() {
        return Err((ErrorCode::InviteRevoked, "this invite was revoked".into()));
    }
    if now_secs > state.expires_at {
        return Err((ErrorCode::InviteExpired, "this invite has expired".into()));
    }
    if state.uses >= state.max_uses {
        return Err((
            ErrorCode::InviteExhausted,
            format!(
                "this invite allowed {} use(s); all were taken",
                state.max_uses
            ),
        ));
    }
    Ok(())
}

/// Sends a session every stored message waiting for it (its member's and its
/// own), oldest first, with backpressure. While it runs, live pushes to the
/// session are skipped; the final re-check after turning that off catches
/// anything committed in between, so nothing is missed and order holds.
pub async fn drain(broker: &BrokerState, mesh: &MeshHub, session: &SessionHandle) {
    let _one_at_a_time = session.drain_lock.lock().await;
    drain_locked(broker, mesh, session, Priority::Low).await;
}

/// A drain because another replica stored messages for this session that
/// were not pushed to it (a catch-up after missed notifications, or a round
/// too large to name them): coalesced (one waiting at a time per session,
/// which sees everything a second would), and, unlike a pull, it respects
/// the session's status as a live push does (busy: `now` only).
pub fn wake_drain(broker: Arc<BrokerState>, mesh: Arc<MeshHub>, session: Arc<SessionHandle>) {
    if !session.schedule_wake() {
        return;
    }
    tokio::spawn(async move {
        let _one_at_a_time = session.drain_lock.lock().await;
        session.wake_started();
        let max = session.max_priority();
        drain_locked(&broker, &mesh, &session, max).await;
    });
}

/// [`drain`] with the session's drain lock held, of messages of at most
/// `max_priority` (`Low`: all).
async fn drain_locked(
    broker: &BrokerState,
    mesh: &MeshHub,
    session: &SessionHandle,
    max_priority: Priority,
) {
    session.set_draining(true);
    let recipients = [session.member, session.session];
    let mut after = 0;
    let mut rechecked = false;
    loop {
        if session.is_killed() {
            break;
        }
        // A drain is a pull (a new connection, or a session turning idle):
        // it hands over every priority. Only live pushes respect `working`.
        let page = match drain_page(broker, mesh, session, &recipients, after, max_priority).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "reading queued messages failed");
                break;
            }
        };
        let Some(page) = page else {
            if rechecked {
                break;
            }
            session.set_draining(false);
            rechecked = true;
            continue;
        };
        if rechecked {
            session.set_draining(true);
            rechecked = false;
        }
        after = after.max(page.upto);
        for p in page.deliver {
            if !session
                .push_wait(deliver_text(p.seq, &p.envelope_json, p.queued_at_ms))
                .await
            {
                session.set_draining(false);
                return;
            }
            metrics::counter!(m::PUSHED).increment(1);
        }
    }
    session.set_draining(false);
}

/// One step of a drain: what to deliver, oldest first, and the seq up to
/// which everything was looked at.
struct DrainPage {
    deliver: Vec<PendingMessage>,
    upto: u64,
}

/// Reads the next page of a session's queue: its direct messages and, for
/// its member, the fan-out messages of every target it may be a recipient
/// of. Sources are merged by seq up to the lowest seq at which a full page
/// was cut off, so nothing is skipped. `None` when nothing is left.
async fn drain_page(
    broker: &BrokerState,
    mesh: &MeshHub,
    session: &SessionHandle,
    recipients: &[PublicKey],
    after: u64,
    max_priority: Priority,
) -> Result<Option<DrainPage>, crate::store::StoreError> {
    let store = &broker.store;
    let direct = store
        .pending(&mesh.id, recipients, after, max_priority, DRAIN_PAGE)
        .await?;
    // A page that may have been cut (by count or by weight) bounds what the
    // other source may deliver: nothing above its last seq is known yet.
    let weight = |rows: &[PendingMessage]| rows.iter().map(|p| p.envelope_json.len() as u64).sum();
    let mut bound = match direct.last() {
        Some(last) if DRAIN_PAGE.may_be_cut(direct.len(), weight(&direct)) => last.seq,
        _ => u64::MAX,
    };
    let mut seen = direct.last().map(|p| p.seq);
    let mut deliver = direct;
    let targets = mesh.read_log(|l| crate::fanout::member_targets(&l.roster, &session.member));
    // Every target in one query; the answer holds every fan-out row up to
    // its last, so a full answer bounds the page like a full direct one.
    let rows = store
        .fanout_pages(&mesh.id, &session.member, &targets, after, DRAIN_PAGE)
        .await?;
    if let Some(last) = rows.last() {
        seen = Some(seen.map_or(last.seq, |s| s.max(last.seq)));
        if DRAIN_PAGE.may_be_cut(rows.len(), fanout_weight(&rows)) {
            bound = bound.min(last.seq);
        }
    }
    let mut by_target: std::collections::BTreeMap<String, Vec<FanoutRow>> = Default::default();
    for row in rows {
        by_target.entry(row.target.clone()).or_default().push(row);
    }
    let now = crate::now_ms();
    for (target_text, rows) in by_target {
        let Ok(target) = target_text.parse::<Target>() else {
            continue;
        };
        let cap = Cap::for_target(&target_text);
        // Rows above the priority limit still count for the cursor (judged
        // below); they are only not delivered now.
        let too_low: std::collections::HashSet<u64> = rows
            .iter()
            .filter(|r| {
                crate::store::priority_rank(r.priority) > crate::store::priority_rank(max_priority)
            })
            .map(|r| r.seq)
            .collect();
        let verdict = mesh.read_log(|l| {
            crate::fanout::judge_page(&l.roster, &session.member, &target, rows, now, &|sender| {
                mesh.grants_allow(&session.member, sender, cap)
            })
        });
        if let Some(cursor) = verdict.cursor {
            store
                .advance_fanout_cursor(&mesh.id, &session.member, &target_text, cursor)
                .await?;
        }
        deliver.extend(
            verdict
                .deliver
                .into_iter()
                .filter(|(seq, _, _)| !too_low.contains(seq))
                .map(|(seq, envelope_json, queued_at_ms)| PendingMessage {
                    seq,
                    envelope_json,
                    queued_at_ms,
                }),
        );
    }
    let Some(seen) = seen else {
        return Ok(None);
    };
    deliver.retain(|p| p.seq <= bound);
    deliver.sort_by_key(|p| p.seq);
    deliver.dedup_by_key(|p| p.seq);
    Ok(Some(DrainPage {
        deliver,
        upto: seen.min(bound),
    }))
}

/// What a sender hears when the recipient's grants refuse a direct message.
pub const REFUSED_BY_GRANTS: &str = "refused: blocked by recipient";

fn short_key(k: &PublicKey) -> String {
    k.to_hex()[..8].to_owned()
}

fn short_hash(h: &Hash32) -> String {
    h.to_hex()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use claudemesh_crypto::SigningKey;
    use claudemesh_crypto::log::{LogBuilder, Role};

    use super::*;

    #[test]
    fn a_big_log_is_served_in_frames_under_the_limit() {
        // 600 members: ~1,200 entries, far more than one frame holds.
        let owner = SigningKey::generate();
        let mut log = LogBuilder::new(&owner, 1_700_000_000);
        for _ in 0..600 {
            log.add_member(&owner, Role::Member, 1_700_000_000).unwrap();
        }
        let entries = log.entries();
        let mut from = 0;
        let mut frames = 0;
        while from < entries.len() {
            let page = entries_within_budget(&entries[from..], MAX_LOG_ENTRIES_PER_FRAME);
            assert!(!page.is_empty());
            let frame = BrokerFrame::LogEntries(LogEntries {
                req: Some("r".repeat(64)),
                entries: page.clone(),
                head: log.roster().head(),
                len: log.roster().len(),
                more: true,
            });
            let text = serde_json::to_string(&frame).unwrap();
            assert!(text.len() <= claudemesh_proto::limits::MAX_FRAME_BYTES);
            from += page.len();
            frames += 1;
        }
        assert!(frames > 4, "{frames} frames");
    }
}
