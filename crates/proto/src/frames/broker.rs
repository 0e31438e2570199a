//! Frames a broker sends ([`BrokerFrame`]): the challenge and welcome of
//! the handshake, answers to each request kind, errors, and what it pushes
//! (deliveries, presence and log updates).

use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::coord::{CoordId, CoordKind, CoordObject, RingLink};
use claudemesh_crypto::encoding::base64_bytes;
use claudemesh_crypto::envelope::{Envelope, MessageId};
use claudemesh_crypto::log::{LogEntry, PeerType};
use claudemesh_crypto::receipt::{Receipt, Watermark};
use claudemesh_crypto::{Hash32, MemberKey, MeshId, PublicKey, SessionKey};
use serde::{Deserialize, Serialize};

use crate::errors::ErrorCode;
use crate::limits::Limits;
use crate::presence::{EncryptedBlob, Status};

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
    /// Answer to a `send` with `deliver_at_ms`: held for later.
    Scheduled(Scheduled),
    /// Answer to `schedule_list`.
    SchedulePage(SchedulePage),
    /// Answer to `schedule_cancel`.
    ScheduleCancelled(ScheduleCancelled),
    /// Answer to `coord_put` and `coord_forget`.
    CoordStored(CoordStored),
    /// Answer to `coord_sync`.
    CoordPage(CoordPage),
    /// Answer to `coord_ring_put`.
    CoordRingStored(CoordRingStored),
    /// Answer to `coord_ring`.
    CoordRingPage(CoordRingPage),
    /// Answer to `task_act`.
    TaskState(TaskState),
    /// Answer to `state_set`.
    StateAnswer(StateAnswer),
    /// Pushed: coordination objects of these kinds changed in the mesh.
    CoordChanged(CoordChanged),
    /// Answer to `lease_take`.
    LeaseAnswer(LeaseAnswer),
    /// Answer to `lease_renew`.
    LeaseRenewed(LeaseRenewed),
    /// Answer to `ping`.
    Pong(Pong),
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
    pub member: MemberKey,
    /// The session key authenticated.
    pub session: SessionKey,
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
    /// Fan-out messages: its number within its target (a sender's own
    /// posts are never delivered back to it; this fills its watermarks' gap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tseq: Option<u64>,
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
    /// The sender's deadline (`send.ttl_ms`), unix milliseconds: not to be
    /// shown after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Fan-out messages: the broker's number for it within its target
    /// (1, 2, 3, … without gaps per target), what watermarks count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tseq: Option<u64>,
}

/// One peer as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPresence {
    /// Member key.
    pub member: MemberKey,
    /// Session key, when the entry describes one connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionKey>,
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
    pub mesh_id: MeshId,
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
    /// Removed by retention (or its deadline) before it was shown.
    Expired,
    /// The recipient answered it (a message with `reply_to` this one).
    Answered,
}

/// One recipient's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    /// The recipient key (member or session).
    pub recipient: PublicKey,
    /// Its state as the broker observed it (unsigned: evidence only where a
    /// receipt or watermark below proves it).
    pub state: DeliveryState,
    /// Signed receipts the recipient sent for this message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<Receipt>,
    /// Signed watermarks of the recipient that cover this message's seq
    /// (fan-out messages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<Watermark>,
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
    /// The sender's deadline, unix milliseconds, when it sent with a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Fan-out messages: its number within its target (what `marks` cover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tseq: Option<u64>,
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

/// `grants_stored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantsStored {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The version the broker now holds for this member.
    pub version: u64,
}

/// `scheduled`: a `send` with `deliver_at_ms` is durably held; it will be
/// stored and delivered (and its sender sees its seq in `message_status`)
/// at `deliver_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    /// The `send`'s correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The message id.
    pub id: MessageId,
    /// When it will be delivered (unix ms, the broker's clock).
    pub deliver_at_ms: u64,
    /// True when this id was already held (a resend): the first hold stands.
    #[serde(default)]
    pub duplicate: bool,
}

/// One message held for later, as `schedule_list` shows it (never its
/// contents: the broker holds only the sealed envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    /// The message id.
    pub id: MessageId,
    /// Its target, as in the envelope (`member:<hex>`, `#topic`, ...).
    pub target: String,
    /// When it will be delivered (unix ms, the broker's clock).
    pub deliver_at_ms: u64,
    /// Its time to live, counted from delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Size of the sealed envelope in bytes.
    pub size: u64,
    /// When the broker took it (unix ms).
    pub created_at_ms: u64,
    /// `held` (waiting for its time) or `failed` (its time came and it
    /// could not be sent: `error` says why; it stays listed until
    /// cancelled or past the retention).
    pub state: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `schedule_page`: this member's held messages, soonest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulePage {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// At most [`crate::limits::MAX_HELD_PER_MEMBER`].
    pub messages: Vec<HeldMessage>,
}

/// `schedule_cancelled`: the held message is gone and will never be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleCancelled {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The message id.
    pub id: MessageId,
}

/// `coord_stored`: a `coord_put` or `coord_forget` is durably stored, as
/// feed position `cseq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordStored {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The object's kind.
    pub kind: CoordKind,
    /// The object's id.
    pub id: CoordId,
    /// Its position in the mesh's coordination feed.
    pub cseq: u64,
    /// True when nothing changed: the same object was already stored, or
    /// it was already forgotten.
    #[serde(default)]
    pub duplicate: bool,
}

/// One change in the coordination feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordChange {
    /// Its position in the mesh's coordination feed (commit order).
    pub cseq: u64,
    /// The object's id.
    pub id: CoordId,
    /// The object as stored; absent when it was forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Box<CoordObject>>,
    /// For a task: the last act on it (a claim, release or completion),
    /// absent while it was never acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<CoordObject>>,
    /// For a lease: when it ends (unix ms, the broker's clock; renewals
    /// move it, so it is the broker's word, not signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Sent without its object because its author's grants refuse the
    /// reader (`task`, `state`, `memory`): the reader drops its copy, and
    /// syncs from the start once the page's `grants` changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
}

/// A live lease that stands in the way of a take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHeld {
    /// Its id.
    pub id: CoordId,
    /// Its holder's member.
    pub holder: MemberKey,
    /// The holder's session that took it.
    pub session: SessionKey,
    /// It is exclusive.
    pub exclusive: bool,
    /// When it ends (unix ms, the broker's clock).
    pub expires_at_ms: u64,
    /// The sealed lease (readers open it to say which paths).
    pub object: Box<CoordObject>,
}

/// `lease_answer`: the answer to `lease_take`: granted (until
/// `expires_at_ms`, at feed position `cseq`), or not, with the live leases
/// of other sessions in the way (at most 16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAnswer {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The lease was granted.
    pub granted: bool,
    /// The lease's id.
    pub id: CoordId,
    /// When it ends, if granted (unix ms, the broker's clock).
    #[serde(default)]
    pub expires_at_ms: u64,
    /// Its feed position, if granted.
    #[serde(default)]
    pub cseq: u64,
    /// What stands in the way, if not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<LeaseHeld>,
}

/// `lease_renewed`: the leases `lease_renew` extended, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenewed {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The leases extended (the others are gone or not this member's).
    pub ids: Vec<CoordId>,
    /// Their new end (unix ms, the broker's clock).
    pub expires_at_ms: u64,
}

/// Where a task stands, as the broker arbitrates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPhase {
    /// Nobody holds it.
    Open,
    /// A member claimed it.
    Claimed,
    /// Completed (final).
    Done,
}

impl TaskPhase {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskPhase::Open => "open",
            TaskPhase::Claimed => "claimed",
            TaskPhase::Done => "done",
        }
    }
}

/// `state_answer`: the answer to `state_set`. `ok` says whether it was
/// stored (a resend of the stored object is `ok` too); when not, the entry
/// moved on: `version` and `current` are what is stored now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateAnswer {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The write was stored.
    pub ok: bool,
    /// The entry's id.
    pub id: CoordId,
    /// Its version now (0: absent).
    pub version: u64,
    /// Its feed position now (0: absent).
    pub cseq: u64,
    /// When not stored: the entry as it is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Box<CoordObject>>,
}

/// `coord_changed` (pushed to every session of the mesh): coordination
/// objects of these kinds changed, here or on another replica. It carries
/// nothing else: a session that cares syncs those kinds (`coord_sync`).
/// A hint, not a guarantee: a session whose queue is full misses it, so
/// watchers also sync after a reconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordChanged {
    /// The kinds that changed.
    pub kinds: Vec<CoordKind>,
}

/// `task_state`: the answer to `task_act`. `ok` says whether the act was
/// applied; either way the rest is the task as it stands after it (so a
/// lost claim names who holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The act was applied.
    pub ok: bool,
    /// The task's id.
    pub id: CoordId,
    /// Its version (1 when created, one more per act).
    pub version: u64,
    /// Where it stands.
    pub phase: TaskPhase,
    /// Its claimant (claimed) or completer (done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<MemberKey>,
    /// The last act on it (what readers verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<CoordObject>>,
    /// Its feed position after the act (the stored one when not applied).
    pub cseq: u64,
}

/// `coord_page`: changes to one kind after the `after` asked for, oldest
/// first; each object appears once, at its latest change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordPage {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The kind asked for.
    pub kind: CoordKind,
    /// The changes (a page is cut to fit in a frame).
    pub changes: Vec<CoordChange>,
    /// The position to ask from next: the last change's `cseq`, or the
    /// `after` asked for when there is none.
    pub head: u64,
    /// True when more changes follow `head`.
    #[serde(default)]
    pub more: bool,
    /// The mesh's visibility generation: the grants generation plus the
    /// length of the membership log, so it changes whenever any member's
    /// grant set does or a log entry (a topic joined or left among them)
    /// is appended. A reader that was sent withheld changes syncs again
    /// from the start when it differs from the one those came with, so
    /// what a changed grant or topic membership lets through arrives.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub grants: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `coord_ring_stored`: the link is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordRingStored {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The link's epoch.
    pub epoch: u64,
    /// True when this signer's link for that epoch was already stored (the
    /// first one stands).
    #[serde(default)]
    pub duplicate: bool,
}

/// `coord_ring_page`: ring links by epoch then signer, every link of each
/// epoch it holds (a page is cut between epochs to fit a frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordRingPage {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The links.
    pub links: Vec<RingLink>,
    /// True when links of later epochs follow: ask with `after` = the last
    /// link's epoch.
    #[serde(default)]
    pub more: bool,
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
        "scheduled",
        "schedule_page",
        "schedule_cancelled",
        "coord_stored",
        "coord_page",
        "coord_ring_stored",
        "coord_ring_page",
        "task_state",
        "state_answer",
        "coord_changed",
        "lease_answer",
        "lease_renewed",
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
            BrokerFrame::Scheduled(_) => "scheduled",
            BrokerFrame::SchedulePage(_) => "schedule_page",
            BrokerFrame::ScheduleCancelled(_) => "schedule_cancelled",
            BrokerFrame::CoordStored(_) => "coord_stored",
            BrokerFrame::CoordPage(_) => "coord_page",
            BrokerFrame::CoordRingStored(_) => "coord_ring_stored",
            BrokerFrame::CoordRingPage(_) => "coord_ring_page",
            BrokerFrame::TaskState(_) => "task_state",
            BrokerFrame::StateAnswer(_) => "state_answer",
            BrokerFrame::CoordChanged(_) => "coord_changed",
            BrokerFrame::LeaseAnswer(_) => "lease_answer",
            BrokerFrame::LeaseRenewed(_) => "lease_renewed",
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
