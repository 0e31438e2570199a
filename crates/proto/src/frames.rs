//! Every frame of the wire protocol, client → broker ([`ClientFrame`]) and
//! broker → client ([`BrokerFrame`]). One JSON object per websocket text
//! frame, discriminated by `"type"` (snake_case). Requests may carry a
//! client-chosen `"req"` string that the answer (or error) echoes.
//!
//! Binary values: keys, hashes, signatures, ids and nonces are lowercase
//! hex; ciphertexts and blobs are standard base64. `docs/protocol.md` lists
//! every field.

use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::encoding::base64_bytes;
use claudemesh_crypto::envelope::{Envelope, MessageId};
use claudemesh_crypto::grants::GrantSet;
use claudemesh_crypto::log::{LogEntry, PeerType};
use claudemesh_crypto::{Hash32, Nonce, PublicKey, Signature};
use serde::{Deserialize, Serialize};

use crate::errors::ErrorCode;
use crate::hello::Hello;
use crate::limits::Limits;

/// Presence status, as Claude Code users know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for work; takes every priority.
    #[default]
    Idle,
    /// Busy; takes `now` messages only until idle.
    Working,
    /// Do not disturb; takes `now` messages only.
    Dnd,
}

impl Status {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Working => "working",
            Status::Dnd => "dnd",
        }
    }
}

/// A small ciphertext under an epoch key (presence summaries): secretbox
/// under the epoch's profile key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedBlob {
    /// The epoch whose profile key encrypted it.
    pub epoch: u64,
    /// secretbox nonce.
    pub nonce: Nonce,
    /// secretbox output.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
}

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

/// Frames a broker sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrokerFrame {
    /// First frame on every connection.
    Challenge(Challenge),
    /// The hello was accepted.
    Welcome(Box<Welcome>),
    /// A request (or the connection) failed.
    Error(ErrorFrame),
    /// A `send` was durably stored.
    Accepted(Accepted),
    /// A message for this connection.
    Deliver(Deliver),
    /// A peer's presence changed.
    Presence(PresenceUpdate),
    /// Answer to `peer_list`.
    Peers(Peers),
    /// Answer to `log_fetch`.
    LogEntries(LogEntries),
    /// Answer to `log_append` and `invite_create`.
    LogAppended(LogAppended),
    /// Someone appended to the log.
    LogUpdate(LogUpdate),
    /// Answer to `invite_fetch`.
    InviteBundle(InviteBundle),
    /// Answer to `invite_join`.
    Joined(Joined),
    /// Answer to `message_status`.
    MessageStatusResult(MessageStatusResult),
    /// Answer to `topic_history`.
    TopicHistoryResult(TopicHistoryResult),
    /// Answer to `grants_set`.
    GrantsStored(GrantsStored),
    /// Answer to `ping`.
    Pong(Pong),
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

/// The 32 random bytes of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeNonce(#[serde(with = "hex32")] pub [u8; 32]);

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        claudemesh_crypto::encoding::decode_hex_array(&s).map_err(serde::de::Error::custom)
    }
}

/// `challenge`: the first frame on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 fresh random bytes; a hello must sign them.
    pub nonce: ChallengeNonce,
    /// The broker instance's id (for logs and diagnostics).
    pub broker_id: String,
    /// The broker's clock, unix milliseconds (for skew checks).
    pub time_ms: u64,
    /// Protocol versions the broker speaks.
    pub versions: Vec<u32>,
}

/// `welcome`: the connection is authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The member key authenticated.
    pub member: PublicKey,
    /// The session key authenticated.
    pub session: PublicKey,
    /// The broker's log head.
    pub log_head: Hash32,
    /// The broker's log length.
    pub log_len: u64,
    /// The limits this broker enforces.
    pub limits: Limits,
    /// Broker clock, unix milliseconds.
    pub time_ms: u64,
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The request this answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// For `rate_limited`: when to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// `accepted`: the message is durably stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The `send`'s correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The message id.
    pub id: MessageId,
    /// Broker sequence number.
    pub seq: u64,
    /// True when this id was already stored (a resend): nothing new was stored.
    #[serde(default)]
    pub duplicate: bool,
}

/// `deliver`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliver {
    /// Broker sequence number (ack with it).
    pub seq: u64,
    /// The message.
    pub envelope: Box<Envelope>,
    /// When the broker stored it, unix milliseconds.
    pub queued_at_ms: u64,
}

/// One peer as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPresence {
    /// Member key.
    pub member: PublicKey,
    /// Session key, when the entry describes one connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<PublicKey>,
    /// The session's certificate (as presented in its hello), so peers can
    /// check for themselves that the session belongs to the member before
    /// they encrypt to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<SessionCert>,
    /// Connected now.
    pub online: bool,
    /// Status.
    pub status: Status,
    /// Peer type, if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<PeerType>,
    /// Encrypted one-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<EncryptedBlob>,
    /// When it connected, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_at_ms: Option<u64>,
    /// When it was last seen, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    /// Whether a connection can take pushed messages right now.
    pub live_push: bool,
}

/// `presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUpdate {
    /// The peer's new state.
    pub peer: Box<PeerPresence>,
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

/// `peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Members' sessions (online ones, and members with none), ordered by
    /// member key then session key.
    pub peers: Vec<PeerPresence>,
    /// Present when more peers follow: ask again with `after` set to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `log_entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntries {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Entries from `from_seq`.
    pub entries: Vec<LogEntry>,
    /// The broker's head.
    pub head: Hash32,
    /// The broker's log length.
    pub len: u64,
    /// More entries follow: fetch again from the next seq.
    pub more: bool,
}

/// `log_appended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAppended {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// New head.
    pub head: Hash32,
    /// New length.
    pub len: u64,
}

/// `log_update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogUpdate {
    /// New head.
    pub head: Hash32,
    /// New length.
    pub len: u64,
}

/// `invite_bundle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteBundle {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The mesh the invite belongs to.
    pub mesh_id: Hash32,
    /// The encrypted welcome bundle.
    #[serde(with = "base64_bytes")]
    pub bundle: Vec<u8>,
    /// The first entries of the log (fetch the rest with `log_fetch` after hello).
    pub log: Vec<LogEntry>,
    /// The broker's log length.
    pub log_len: u64,
}

/// `joined`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// New head (ends with the admit).
    pub head: Hash32,
    /// New length.
    pub len: u64,
}

/// Delivery state of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Stored, not yet acknowledged by the recipient.
    Queued,
    /// The recipient's client stored it.
    Delivered,
    /// The recipient's client showed it.
    Read,
    /// Removed by retention before delivery.
    Expired,
}

/// One recipient's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    /// The recipient key (member or session).
    pub recipient: PublicKey,
    /// Its state.
    pub state: DeliveryState,
}

/// `message_status_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatusResult {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The message id.
    pub id: MessageId,
    /// Broker sequence number.
    pub seq: u64,
    /// Per recipient, ordered by recipient key (a page of them).
    pub recipients: Vec<RecipientStatus>,
    /// Present when more recipients follow: ask again with `after` set to
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<PublicKey>,
}

/// `topic_history_result`: envelopes as stored, newest first. The client
/// verifies and opens each one exactly as a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicHistoryResult {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The topic.
    pub topic: String,
    /// The messages, newest first.
    pub messages: Vec<Deliver>,
    /// Older messages exist: ask again with `before_seq` = the last seq here.
    pub more: bool,
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

/// `grants_stored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantsStored {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The version the broker now holds for this member.
    pub version: u64,
}

/// `pong`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Broker clock, unix milliseconds.
    pub time_ms: u64,
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

impl BrokerFrame {
    /// Every broker frame type name, as on the wire.
    pub const TYPES: &'static [&'static str] = &[
        "challenge",
        "welcome",
        "error",
        "accepted",
        "deliver",
        "presence",
        "peers",
        "log_entries",
        "log_appended",
        "log_update",
        "invite_bundle",
        "joined",
        "message_status_result",
        "topic_history_result",
        "grants_stored",
        "pong",
    ];

    /// The frame's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            BrokerFrame::Challenge(_) => "challenge",
            BrokerFrame::Welcome(_) => "welcome",
            BrokerFrame::Error(_) => "error",
            BrokerFrame::Accepted(_) => "accepted",
            BrokerFrame::Deliver(_) => "deliver",
            BrokerFrame::Presence(_) => "presence",
            BrokerFrame::Peers(_) => "peers",
            BrokerFrame::LogEntries(_) => "log_entries",
            BrokerFrame::LogAppended(_) => "log_appended",
            BrokerFrame::LogUpdate(_) => "log_update",
            BrokerFrame::InviteBundle(_) => "invite_bundle",
            BrokerFrame::Joined(_) => "joined",
            BrokerFrame::MessageStatusResult(_) => "message_status_result",
            BrokerFrame::TopicHistoryResult(_) => "topic_history_result",
            BrokerFrame::GrantsStored(_) => "grants_stored",
            BrokerFrame::Pong(_) => "pong",
        }
    }

    /// An `error` frame.
    pub fn error(req: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        BrokerFrame::Error(ErrorFrame {
            req,
            code,
            message: message.into(),
            retry_after_ms: None,
        })
    }
}
