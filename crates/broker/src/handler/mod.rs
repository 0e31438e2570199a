//! One file per client frame kind, named by its wire name (`send.rs`,
//! `invite_fetch.rs`, `hello.rs`, ...), each implementing [`Handle`] for its
//! frame struct and returning `Result<Reply, Refusal>`: a refusal is one
//! `?`, and the connection turns it into the `error` frame in one place
//! ([`Refusal::into_frame`]). The `pub mod` lines below and the
//! connection's dispatch are generated from proto's one list of frame kinds
//! ([`claudemesh_proto::with_client_frames`]), so adding a request is that
//! list, its struct, and one file here.
//!
//! This module holds what every handler shares: [`Caller`] (the
//! authenticated session), [`Context`] (the connection's own state some
//! handlers need), [`Reply`], [`Refusal`], [`load_mesh`].

/// `pub mod <wire name>;` for every client frame kind.
macro_rules! handler_modules {
    ($(
        $(#[$doc:meta])*
        $variant:ident($ty:ty) $wire:ident, req: $req:ident, before_hello: $pre:ident;
    )*) => {
        $(pub mod $wire;)*
    };
}

claudemesh_proto::with_client_frames!(handler_modules);

use std::future::Future;
use std::sync::Arc;

use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::frames::ErrorFrame;
use claudemesh_proto::{BrokerFrame, ErrorCode};

use crate::admission::{Origin, PendingGuard};
use crate::mesh::MeshHub;
use crate::outbox::Outbox;
use crate::ratelimit::TokenBucket;
use crate::sessions::SessionHandle;
use crate::state::BrokerState;

/// A client frame kind the broker answers. `handle` serves it on an
/// authenticated connection; `before_hello` before the handshake, for the
/// kinds proto marks `before_hello: yes` (the others are refused with
/// `not_authenticated` without reaching it).
pub trait Handle: Sized {
    /// Answers the frame from an authenticated session.
    fn handle(
        self,
        caller: Caller<'_>,
        cx: &mut Context<'_>,
    ) -> impl Future<Output = Result<Reply, Refusal>> + Send;

    /// Answers the frame before the hello; by default, `send hello first`.
    fn before_hello(
        self,
        cx: &mut Context<'_>,
    ) -> impl Future<Output = Result<Reply, Refusal>> + Send {
        let _ = cx;
        std::future::ready(Err(not_authenticated()))
    }
}

/// A boxed frame (`hello`) is handled as the frame it holds.
impl<T: Handle + Send> Handle for Box<T> {
    fn handle(
        self,
        caller: Caller<'_>,
        cx: &mut Context<'_>,
    ) -> impl Future<Output = Result<Reply, Refusal>> + Send {
        (*self).handle(caller, cx)
    }

    fn before_hello(
        self,
        cx: &mut Context<'_>,
    ) -> impl Future<Output = Result<Reply, Refusal>> + Send {
        (*self).before_hello(cx)
    }
}

/// What a frame that needs the hello first hears before it.
pub fn not_authenticated() -> Refusal {
    Refusal::new(ErrorCode::NotAuthenticated, "send hello first")
}

/// An invite this connection proved it holds: its mesh and invite key.
pub type HeldInvite = (MeshId, PublicKey);

/// The connection a frame came on, beyond its session: what some handlers
/// read or change (the handshake, invites, mesh creation, presence).
#[derive(Debug)]
pub struct Context<'a> {
    /// The broker.
    pub broker: &'a Arc<BrokerState>,
    /// The connection's id.
    pub conn_id: u64,
    /// This connection's challenge nonce.
    pub nonce: &'a [u8; 32],
    /// Where the connection comes from.
    pub origin: &'a Origin,
    /// The connection's outbound queue.
    pub out: &'a Outbox,
    /// The connection's `presence_set` bucket: each one is copied to every
    /// other session of the mesh.
    pub presence_rate: &'a mut TokenBucket,
    /// The invite this connection proved it holds (`invite_fetch`).
    pub invite: &'a mut Option<HeldInvite>,
    /// Counts the connection against its address's cap until its hello.
    pub pending: &'a mut Option<PendingGuard>,
    /// The session the hello admitted.
    pub session: &'a mut Option<Arc<SessionHandle>>,
    /// Its mesh.
    pub mesh: &'a mut Option<Arc<MeshHub>>,
}

/// What a handled request answers now.
#[derive(Debug)]
pub enum Reply {
    /// Nothing now: the writer answers once the work is committed, or the
    /// request is owed no answer.
    Nothing,
    /// One frame.
    Frame(BrokerFrame),
    /// The answer the client is waiting for, then the connection ends with
    /// this close code and reason (a member removing itself).
    FrameThenClose(BrokerFrame, u16, &'static str),
}

/// Why a request is refused: the `error` frame's code and text, and what
/// else the frame carries. Built by handlers, sent by the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code the client acts on.
    pub code: ErrorCode,
    /// What the client (and its user) reads.
    pub message: String,
    /// For rate limits: when to retry.
    pub retry_after_ms: Option<u64>,
    /// Sent without the request's correlation id (as the broker always has
    /// for these few refusals).
    pub unaddressed: bool,
    /// The connection ends after the error (a refused handshake).
    pub fatal: bool,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            retry_after_ms: None,
            unaddressed: false,
            fatal: false,
        }
    }

    /// The same, telling the client when to retry.
    pub fn retry_after(mut self, ms: Option<u64>) -> Self {
        self.retry_after_ms = ms;
        self
    }

    /// The same, sent without the request's correlation id.
    pub fn unaddressed(mut self) -> Self {
        self.unaddressed = true;
        self
    }

    /// The same, ending the connection.
    pub fn fatal(mut self) -> Self {
        self.fatal = true;
        self
    }

    /// `internal`: the store failed; the detail goes to the log only.
    pub fn internal(message: &'static str) -> Self {
        Refusal::new(ErrorCode::Internal, message)
    }

    /// The `error` frame answering the request `req`: the one place a
    /// refusal becomes what the client reads.
    pub fn into_frame(self, req: Option<String>) -> BrokerFrame {
        BrokerFrame::Error(ErrorFrame {
            req: if self.unaddressed { None } else { req },
            code: self.code,
            message: self.message,
            retry_after_ms: self.retry_after_ms,
        })
    }
}

/// The authenticated session a request comes from, and its mesh.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The broker.
    pub broker: &'a Arc<BrokerState>,
    /// The session (its member, key and outbound queue).
    pub session: &'a Arc<SessionHandle>,
    /// Its mesh.
    pub mesh: &'a Arc<MeshHub>,
}

/// The mesh, loaded if need be; `unknown_mesh` if the broker has none by
/// that id, `internal` if the store failed.
pub async fn load_mesh(broker: &BrokerState, id: &MeshId) -> Result<Arc<MeshHub>, Refusal> {
    match broker.hub.mesh(id).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Refusal::new(ErrorCode::UnknownMesh, "no such mesh")),
        Err(e) => {
            tracing::error!(error = %e, "loading mesh failed");
            Err(Refusal::internal("the broker could not load the mesh"))
        }
    }
}

/// Abbreviated key or hash for messages (first 8 hex digits).
pub fn short_hex(hex: String) -> String {
    hex[..8].to_owned()
}
