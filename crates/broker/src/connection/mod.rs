//! One websocket connection, from challenge to close: it reads frames
//! (size-checked before parsing, rate-limited), dispatches each to its
//! handler ([`crate::handler`]) in the one switch over frame kinds
//! (generated from proto's list of them), and writes the answer or the
//! refusal. Only the errors the protocol marks fatal end the connection.
//!
//! Two tasks per connection: this one reads and answers; the socket task
//! ([`socket`]) writes what the bounded outbound queue holds, pings, and
//! closes.

pub mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use claudemesh_crypto::keys::random_bytes;
use claudemesh_proto::frames::Challenge;
use claudemesh_proto::frames::ChallengeNonce;
use claudemesh_proto::limits::{
    HELLO_TIMEOUT_MS, IDLE_TIMEOUT_MS, MAX_FRAME_BYTES, MAX_QUEUED_BYTES, PRESENCE_RATE_BURST,
    PRESENCE_RATE_PER_SEC,
};
use claudemesh_proto::version::SUPPORTED_VERSIONS;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode, FrameError, close};
use futures_util::StreamExt;

use crate::admission::{Origin, PendingGuard};
use crate::handler::hello::farewell;
use crate::handler::{Caller, Context, Handle, HeldInvite, Refusal, Reply, not_authenticated};
use crate::mesh::MeshHub;
use crate::metrics as m;
use crate::outbox::Outbox;
use crate::ratelimit::{MemberRates, TokenBucket};
use crate::sessions::SessionHandle;
use crate::state::BrokerState;
use crate::wire::text;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

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
    let socket_task = tokio::spawn(socket::write_loop(
        sink,
        reader,
        broker.config.write_timeout,
    ));
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
    invite: Option<HeldInvite>,
    session: Option<Arc<SessionHandle>>,
    mesh: Option<Arc<MeshHub>>,
}

impl Connection {
    /// Queues a frame. A peer that does not read its answers until the
    /// byte budget is spent is cut off (4003), authenticated or not.
    fn send(&self, frame: &BrokerFrame) {
        let _ = self.out.push(text(frame));
    }

    /// Sends a refusal as the `error` frame answering `req`.
    fn refuse(&self, req: Option<String>, refusal: Refusal) {
        self.send(&refusal.into_frame(req));
    }

    async fn run(&mut self, mut stream: futures_util::stream::SplitStream<WebSocket>) -> Flow {
        let mut shutdown = self.broker.shutdown.clone();
        if *shutdown.borrow() {
            return Flow::Close(close::GOING_AWAY, ErrorCode::ShuttingDown.as_str());
        }
        self.send(&BrokerFrame::Challenge(Challenge {
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
                        crate::delivery::wake_drain(self.broker.clone(), mesh.clone(), session.clone());
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
                        self.refuse(
                            None,
                            Refusal::new(ErrorCode::FrameTooLarge, "frame too large"),
                        );
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
                    self.refuse(
                        None,
                        Refusal::new(
                            ErrorCode::CertExpired,
                            "this session's certificate has expired; reconnect with a renewed one",
                        ),
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
                    self.refuse(
                        None,
                        Refusal::new(ErrorCode::Malformed, "binary frames are not allowed"),
                    );
                    return Flow::Close(close::PROTOCOL_ERROR, "binary_frame");
                }
                Message::Close(_) => return Flow::Continue,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if text.len() > MAX_FRAME_BYTES {
                self.refuse(
                    None,
                    Refusal::new(
                        ErrorCode::FrameTooLarge,
                        format!(
                            "frame is {} bytes; the limit is {MAX_FRAME_BYTES}",
                            text.len()
                        ),
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
                self.refuse(
                    claudemesh_proto::codec::salvage_req(text.as_str()),
                    Refusal::new(ErrorCode::RateLimited, "too many frames; slow down")
                        .retry_after(Some(wait)),
                );
                continue;
            }
            let frame = match claudemesh_proto::decode_client_frame(text.as_str()) {
                Ok(f) => f,
                Err(e) => {
                    let req = claudemesh_proto::codec::salvage_req(text.as_str());
                    self.send(&e.to_error_frame(req));
                    if matches!(e, FrameError::TooLarge { .. }) {
                        return Flow::Close(close::TOO_BIG, ErrorCode::FrameTooLarge.as_str());
                    }
                    continue;
                }
            };
            let req = frame.req().map(str::to_owned);
            match self.dispatch(frame).await {
                Ok(Reply::Nothing) => {}
                Ok(Reply::Frame(f)) => self.send(&f),
                Ok(Reply::FrameThenClose(f, code, reason)) => {
                    self.send(&f);
                    self.out.kill(code, reason);
                }
                Err(refusal) => {
                    let fatal = refusal.fatal.then_some(refusal.code);
                    self.refuse(req, refusal);
                    if let Some(code) = fatal {
                        let close = code.close_code().unwrap_or(close::POLICY);
                        return Flow::Close(close, code.as_str());
                    }
                }
            }
        }
    }

    /// Which handler answers a frame, as the connection stands (before or
    /// after its hello).
    async fn dispatch(&mut self, frame: ClientFrame) -> Result<Reply, Refusal> {
        let (session, mesh) = (self.session.clone(), self.mesh.clone());
        let caller = match (&session, &mesh) {
            (Some(session), Some(mesh)) => Some(Caller {
                broker: &self.broker,
                session,
                mesh,
            }),
            _ => None,
        };
        let mut cx = Context {
            broker: &self.broker,
            conn_id: self.conn_id,
            nonce: &self.nonce,
            origin: &self.origin,
            out: &self.out,
            presence_rate: &mut self.presence_rate,
            invite: &mut self.invite,
            pending: &mut self.pending,
            session: &mut self.session,
            mesh: &mut self.mesh,
        };
        handle_frame(frame, caller, &mut cx).await
    }

    /// Leaves the mesh's presence and closes the socket.
    async fn finish(&mut self, code: u16, reason: &'static str) {
        if let (Some(session), Some(mesh)) = (self.session.take(), self.mesh.take()) {
            farewell(&self.broker, &session, &mesh);
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
}

/// Builds [`handle_frame`] from proto's list of frame kinds.
macro_rules! dispatch_by_kind {
    ($(
        $(#[$doc:meta])*
        $variant:ident($ty:ty) $wire:ident, req: $req:ident, before_hello: $pre:ident;
    )*) => {
        /// The one switch over frame kinds: the frame's [`Handle`] impl
        /// answers it, `handle` for a session (`caller`), `before_hello`
        /// before the hello for the kinds allowed there; any other kind is
        /// refused until the hello.
        async fn handle_frame(
            frame: ClientFrame,
            caller: Option<Caller<'_>>,
            cx: &mut Context<'_>,
        ) -> Result<Reply, Refusal> {
            if caller.is_none() && !frame.before_hello() {
                return Err(not_authenticated());
            }
            match frame {
                $(ClientFrame::$variant(f) => match caller {
                    Some(caller) => f.handle(caller, cx).await,
                    None => f.before_hello(cx).await,
                },)*
            }
        }
    };
}

claudemesh_proto::with_client_frames!(dispatch_by_kind);
