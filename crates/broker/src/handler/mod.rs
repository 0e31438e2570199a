//! One function per request kind a client may send, each in its own file,
//! each returning `Result<Reply, Refusal>`: a refusal is one `?`, and the
//! connection turns it into the `error` frame in one place
//! ([`Refusal::into_frame`]). The connection's dispatch is the only switch
//! over frame kinds; adding a request is one file here and one match arm
//! there.

pub mod ack;
pub mod append;
pub mod grants;
pub mod history;
pub mod invite;
pub mod log_fetch;
pub mod mesh_create;
pub mod peers;
pub mod ping;
pub mod presence;
pub mod send;
pub mod status;

use claudemesh_crypto::MeshId;

use std::sync::Arc;

use claudemesh_proto::frames::ErrorFrame;
use claudemesh_proto::{BrokerFrame, ErrorCode};

use crate::mesh::MeshHub;
use crate::sessions::SessionHandle;
use crate::state::BrokerState;

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
