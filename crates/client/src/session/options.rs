//! How a session connects: which session key it acts as, what it
//! announces in its hello, and how long it waits.

use std::time::Duration;

use claudemesh_crypto::log::PeerType;
use claudemesh_proto::frames::Status;

use crate::home::MeshConfig;
use crate::mesh::{SESSION_CERT_RENEW_BEFORE, SessionProfile};

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
