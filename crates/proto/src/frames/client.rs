//! Frames a client sends ([`ClientFrame`]): one struct per request kind,
//! each with its optional `req` correlation id.

use claudemesh_crypto::encoding::base64_bytes;
use claudemesh_crypto::envelope::{Envelope, MessageId};
use claudemesh_crypto::grants::GrantSet;
use claudemesh_crypto::log::{LogEntry, PeerType};
use claudemesh_crypto::{PublicKey, Signature};
use serde::{Deserialize, Serialize};

use crate::hello::Hello;
use crate::presence::{EncryptedBlob, Status};

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticate this connection (answers `challenge`).
    Hello(Box<Hello>),
    /// Send a message.
    Send(Send),
    /// Acknowledge delivered (or read) messages.
    Ack(Ack),
    /// Change own presence.
    PresenceSet(PresenceSet),
    /// Ask for the mesh's peers (a page).
    PeerList(PeerListQuery),
    /// Fetch membership-log entries.
    LogFetch(LogFetch),
    /// Append membership-log entries (atomically).
    LogAppend(LogAppend),
    /// Append an `invite` entry and store its encrypted welcome bundle.
    InviteCreate(InviteCreate),
    /// Before hello: fetch an invite's bundle, proving possession of its secret.
    InviteFetch(InviteFetch),
    /// Before hello: register a new mesh by its signed genesis entry.
    MeshCreate(MeshCreate),
    /// Before hello: append the joiner's `admit` entry.
    InviteJoin(InviteJoin),
    /// Per-recipient status of a message this member sent.
    MessageStatus(MessageStatusQuery),
    /// Stored messages of a topic, newest first.
    TopicHistory(TopicHistoryQuery),
    /// Store this member's signed grant set (TM7).
    GrantsSet(GrantsSetFrame),
    /// Liveness check.
    Ping(Request),
}

/// A request with no fields but its correlation id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Request {
    /// Correlation id, echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
}

/// `send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The sealed, signed message.
    pub envelope: Box<Envelope>,
}

/// `ack`: the recipient stored (or showed) these messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Broker sequence numbers from `deliver`.
    pub seqs: Vec<u64>,
    /// `false`: delivered (stored by the client); `true`: read (shown to the user).
    #[serde(default)]
    pub read: bool,
}

/// `presence_set`: fields left out are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PresenceSet {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// New status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// New encrypted summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<EncryptedBlob>,
    /// New peer type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<PeerType>,
}

/// `log_fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFetch {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// First entry wanted.
    pub from_seq: u64,
    /// At most this many (capped by the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `log_append`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAppend {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Entries, the first at the current log length.
    pub entries: Vec<LogEntry>,
}

/// `invite_create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteCreate {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The signed `invite` entry.
    pub entry: LogEntry,
    /// The welcome bundle encrypted under the invite's bundle key.
    #[serde(with = "base64_bytes")]
    pub bundle: Vec<u8>,
}

/// `invite_fetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteFetch {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The invite public key.
    pub invite_key: PublicKey,
    /// The invite key's signature over the challenge (docs/security.md, Invites).
    pub proof: Signature,
}

/// `mesh_create`: registers a mesh at the broker. The genesis entry is
/// signed by the owner key and its hash is the mesh id, so the broker learns
/// only a public key; sending the same genesis again is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshCreate {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The mesh's `genesis` entry (seq 0).
    pub genesis: LogEntry,
    /// The broker operator's mesh-creation token, when its policy asks for
    /// one (a remote client on a broker that creates meshes only for
    /// token holders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `invite_join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteJoin {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The `admit` entry, signed by the joiner and the invite key.
    pub entry: LogEntry,
}

/// `message_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatusQuery {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The sender's message id.
    pub id: MessageId,
    /// The `next` of the previous page (a recipient key); absent for the
    /// first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<PublicKey>,
}

/// `topic_history`: a page of a topic's stored messages, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicHistoryQuery {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The topic name (without `#`).
    pub topic: String,
    /// At most this many (the broker caps it at 200; default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only messages with a broker sequence number below this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
}

/// `peer_list`: one page of the mesh's peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerListQuery {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The `next` of the previous page; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `grants_set`: the connection's member replaces its grant set. The broker
/// refuses a set for another member (`forbidden`), for another mesh, badly
/// signed or malformed (`malformed`), or whose version is below the stored
/// one (`malformed`); an equal version is answered with `grants_stored` and
/// the stored version (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantsSetFrame {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The signed grant set.
    pub grants: Box<GrantSet>,
}

impl ClientFrame {
    /// Every client frame type name, as on the wire.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "send",
        "ack",
        "presence_set",
        "peer_list",
        "log_fetch",
        "log_append",
        "invite_create",
        "invite_fetch",
        "invite_join",
        "mesh_create",
        "message_status",
        "topic_history",
        "grants_set",
        "ping",
    ];

    /// The frame's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Hello(_) => "hello",
            ClientFrame::Send(_) => "send",
            ClientFrame::Ack(_) => "ack",
            ClientFrame::PresenceSet(_) => "presence_set",
            ClientFrame::PeerList(_) => "peer_list",
            ClientFrame::LogFetch(_) => "log_fetch",
            ClientFrame::LogAppend(_) => "log_append",
            ClientFrame::InviteCreate(_) => "invite_create",
            ClientFrame::InviteFetch(_) => "invite_fetch",
            ClientFrame::InviteJoin(_) => "invite_join",
            ClientFrame::MeshCreate(_) => "mesh_create",
            ClientFrame::MessageStatus(_) => "message_status",
            ClientFrame::TopicHistory(_) => "topic_history",
            ClientFrame::GrantsSet(_) => "grants_set",
            ClientFrame::Ping(_) => "ping",
        }
    }

    /// The correlation id, if the frame carries one.
    pub fn req(&self) -> Option<&str> {
        match self {
            ClientFrame::Hello(_) | ClientFrame::Ack(_) => None,
            ClientFrame::Send(f) => f.req.as_deref(),
            ClientFrame::PresenceSet(f) => f.req.as_deref(),
            ClientFrame::PeerList(f) => f.req.as_deref(),
            ClientFrame::Ping(f) => f.req.as_deref(),
            ClientFrame::LogFetch(f) => f.req.as_deref(),
            ClientFrame::LogAppend(f) => f.req.as_deref(),
            ClientFrame::InviteCreate(f) => f.req.as_deref(),
            ClientFrame::InviteFetch(f) => f.req.as_deref(),
            ClientFrame::InviteJoin(f) => f.req.as_deref(),
            ClientFrame::MeshCreate(f) => f.req.as_deref(),
            ClientFrame::MessageStatus(f) => f.req.as_deref(),
            ClientFrame::TopicHistory(f) => f.req.as_deref(),
            ClientFrame::GrantsSet(f) => f.req.as_deref(),
        }
    }
}
