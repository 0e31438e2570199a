//! Frames a client sends ([`ClientFrame`]): one struct per request kind,
//! each with its optional `req` correlation id, and [`with_client_frames`]:
//! the one list of client frame kinds that proto and the broker build from.

use claudemesh_crypto::coord::{CoordId, CoordKind, CoordObject, RingLink};
use claudemesh_crypto::encoding::base64_bytes;
use claudemesh_crypto::envelope::{Envelope, MessageId};
use claudemesh_crypto::grants::GrantSet;
use claudemesh_crypto::log::{LogEntry, PeerType};
use claudemesh_crypto::receipt::{Receipt, Watermark};
use claudemesh_crypto::{PublicKey, Signature};
use serde::{Deserialize, Serialize};

use crate::presence::{EncryptedBlob, Status};

/// Every client frame kind, once: its `ClientFrame` variant, the struct it
/// carries, its wire name (`type`), whether it carries a `req`, and whether
/// it may come before the hello. `callback!` is called with the whole list;
/// proto builds [`ClientFrame`] and its `TYPES`, `type_name`, `req` and
/// `before_hello` from it, and the broker its handler modules and its
/// dispatch, so a new kind is one line here (and its struct below).
///
/// Each entry: `#[doc] Variant(Type) wire_name, req: yes|no, before_hello: yes|no;`.
#[macro_export]
macro_rules! with_client_frames {
    ($callback:ident) => {
        $callback! {
            /// Authenticate this connection (answers `challenge`).
            Hello(Box<$crate::hello::Hello>) hello, req: no, before_hello: yes;
            /// Send a message.
            Send($crate::frames::Send) send, req: yes, before_hello: no;
            /// Acknowledge delivered (or read) messages.
            Ack($crate::frames::Ack) ack, req: no, before_hello: no;
            /// Signed receipts for messages this session received.
            Receipt($crate::frames::ReceiptFrame) receipt, req: no, before_hello: no;
            /// Signed watermarks for fan-out targets this session receives.
            Watermark($crate::frames::WatermarkFrame) watermark, req: no, before_hello: no;
            /// Change own presence.
            PresenceSet($crate::frames::PresenceSet) presence_set, req: yes, before_hello: no;
            /// Ask for the mesh's peers (a page).
            PeerList($crate::frames::PeerListQuery) peer_list, req: yes, before_hello: no;
            /// Fetch membership-log entries (before hello: a joiner holding an
            /// invite).
            LogFetch($crate::frames::LogFetch) log_fetch, req: yes, before_hello: yes;
            /// Append membership-log entries (atomically).
            LogAppend($crate::frames::LogAppend) log_append, req: yes, before_hello: no;
            /// Append an `invite` entry and store its encrypted welcome bundle.
            InviteCreate($crate::frames::InviteCreate) invite_create, req: yes, before_hello: no;
            /// Before hello: fetch an invite's bundle, proving possession of its secret.
            InviteFetch($crate::frames::InviteFetch) invite_fetch, req: yes, before_hello: yes;
            /// Before hello: register a new mesh by its signed genesis entry.
            MeshCreate($crate::frames::MeshCreate) mesh_create, req: yes, before_hello: yes;
            /// Before hello: append the joiner's `admit` entry.
            InviteJoin($crate::frames::InviteJoin) invite_join, req: yes, before_hello: yes;
            /// Per-recipient status of a message this member sent.
            MessageStatus($crate::frames::MessageStatusQuery) message_status, req: yes, before_hello: no;
            /// Stored messages of a topic, newest first.
            TopicHistory($crate::frames::TopicHistoryQuery) topic_history, req: yes, before_hello: no;
            /// Store this member's signed grant set (TM7).
            GrantsSet($crate::frames::GrantsSetFrame) grants_set, req: yes, before_hello: no;
            /// This member's messages held for later (`send.deliver_at_ms`).
            ScheduleList($crate::frames::ScheduleListQuery) schedule_list, req: yes, before_hello: no;
            /// Cancel a message held for later, before it is sent.
            ScheduleCancel($crate::frames::ScheduleCancel) schedule_cancel, req: yes, before_hello: no;
            /// Store a sealed coordination object (a team memory note).
            CoordPut($crate::frames::CoordPut) coord_put, req: yes, before_hello: no;
            /// Remove a coordination object (its author, an owner or an admin).
            CoordForget($crate::frames::CoordForget) coord_forget, req: yes, before_hello: no;
            /// Changes to the mesh's coordination objects after a feed position.
            CoordSync($crate::frames::CoordSync) coord_sync, req: yes, before_hello: no;
            /// Store a coordination key ring link.
            CoordRingPut($crate::frames::CoordRingPut) coord_ring_put, req: yes, before_hello: no;
            /// Every coordination key ring link of the mesh.
            CoordRing($crate::frames::CoordRingQuery) coord_ring, req: yes, before_hello: no;
            /// Claim, release or complete a task (a signed act).
            TaskAct($crate::frames::TaskActFrame) task_act, req: yes, before_hello: no;
            /// Write a shared state entry at a version (compare-and-set).
            StateSet($crate::frames::StateSet) state_set, req: yes, before_hello: no;
            /// Take a file lease, unless it conflicts with another session's.
            LeaseTake($crate::frames::LeaseTake) lease_take, req: yes, before_hello: no;
            /// Extend this member's leases.
            LeaseRenew($crate::frames::LeaseRenew) lease_renew, req: yes, before_hello: no;
            /// Liveness check.
            Ping($crate::frames::Request) ping, req: yes, before_hello: yes;
        }
    };
}

/// Builds [`ClientFrame`] and its methods from [`with_client_frames`].
macro_rules! client_frame_enum {
    ($(
        $(#[$doc:meta])*
        $variant:ident($ty:ty) $wire:ident, req: $req:ident, before_hello: $pre:ident;
    )*) => {
        /// Frames a client sends.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum ClientFrame {
            $($(#[$doc])* $variant($ty),)*
        }

        impl ClientFrame {
            /// Every client frame type name, as on the wire.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($wire)),*];

            /// The frame's `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(ClientFrame::$variant(_) => stringify!($wire),)*
                }
            }

            /// The correlation id, if the frame carries one.
            pub fn req(&self) -> Option<&str> {
                match self {
                    $(ClientFrame::$variant(f) => client_frame_enum!(@req $req f),)*
                }
            }

            /// Whether the broker reads this kind before the hello (it may
            /// still refuse it there, as `log_fetch` without an invite).
            pub fn before_hello(&self) -> bool {
                match self {
                    $(ClientFrame::$variant(_) => client_frame_enum!(@yes $pre),)*
                }
            }
        }
    };
    (@req yes $f:ident) => { $f.req.as_deref() };
    (@req no $f:ident) => {{ let _ = $f; None }};
    (@yes yes) => { true };
    (@yes no) => { false };
}

with_client_frames!(client_frame_enum);

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
    /// Time to live in milliseconds (1 s to the broker's retention): a
    /// message not shown to a recipient by then is reported `expired` and
    /// dropped. Routing metadata, not signed; absent: the retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Deliver at this time (unix ms, by the broker's clock): the broker
    /// holds the sealed message and stores and delivers it then, to the
    /// recipients of that moment, answering `scheduled` now instead of
    /// `accepted`. Within a second of now, or past: sent at once. At most
    /// the broker's retention ahead. A TTL counts from delivery. Routing
    /// metadata, not signed; only a broker whose `welcome.limits.scheduled`
    /// is true honours it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at_ms: Option<u64>,
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

/// One signed receipt and the broker seq of the message it is about (an
/// unsigned lookup hint: the broker checks it names that very message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqReceipt {
    /// The message's seq from `deliver` (for `answered`: of the message
    /// answered).
    pub seq: u64,
    /// The receipt, signed by this session.
    pub receipt: Receipt,
}

/// `receipt`: delivered / shown / answered receipts this session signed
/// (`docs/security.md` §8.1). A direct message's `delivered` or `shown`
/// receipt acknowledges it as an `ack` would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptFrame {
    /// At most [`crate::limits::MAX_RECEIPTS_PER_FRAME`].
    pub receipts: Vec<SeqReceipt>,
}

/// `watermark`: per fan-out target, "delivered / shown up to seq N",
/// signed by this session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkFrame {
    /// At most [`crate::limits::MAX_RECEIPTS_PER_FRAME`].
    pub marks: Vec<Watermark>,
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

/// `schedule_list`: this member's messages held for later, soonest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleListQuery {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
}

/// `schedule_cancel`: drop a message this member holds for later. Refused
/// `not_found` when no such message is held (never scheduled, cancelled,
/// or already sent: the error says which, with its seq).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleCancel {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The message id given at `send`.
    pub id: MessageId,
}

/// `coord_put`: store a sealed coordination object. The broker checks the
/// author's signature and certificate against the connection, that the
/// author is this session, and that the object is sealed under the mesh's
/// current epoch (`rekey_required` otherwise); it never sees the contents.
/// A resend of a stored id with the same bytes is `duplicate`; with other
/// bytes it is refused `malformed`. Answered `coord_stored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordPut {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The sealed, signed object.
    pub object: Box<CoordObject>,
}

/// `coord_forget`: remove a coordination object for everyone. Allowed to
/// its author's member and to owners and admins (`forbidden` otherwise);
/// the feed then carries the id without an object. Answered `coord_stored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordForget {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The object's kind.
    pub kind: CoordKind,
    /// The object's id.
    pub id: CoordId,
}

/// `coord_sync`: the changes to one kind of coordination object after feed
/// position `after` (0: from the start), oldest first. Answered
/// `coord_page`; ask again from its `head` while `more` is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordSync {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Which objects.
    pub kind: CoordKind,
    /// The `head` of the previous page (0 for the first).
    #[serde(default)]
    pub after: u64,
}

/// `coord_ring_put`: store a ring link (the coordination key of epoch
/// `epoch − 1` sealed under that of `epoch`). The broker keeps one link per
/// epoch and signer; readers choose whose to trust. Answered
/// `coord_ring_stored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordRingPut {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The signed link.
    pub link: Box<RingLink>,
}

/// `task_act`: claim, release or complete a task. The act is a sealed,
/// signed [`CoordObject`] of kind `task_claim`, `task_release` or
/// `task_done` whose id is the task's and whose `rev` is the task's version
/// after the act (one more than the version it moves from), so it applies
/// to one state only. The broker checks it as a `coord_put` and applies it
/// atomically: of concurrent claims of one version exactly one wins, across
/// replicas. A lost race is no error: `task_state` with `ok: false` and the
/// task as it is. Answered `task_state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskActFrame {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The signed act.
    pub act: Box<CoordObject>,
    /// Release or complete a task another member claimed: allowed to the
    /// task's creator, owners and admins (`forbidden` otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// `state_set`: write a shared state entry, a sealed, signed object of
/// kind `state` filed under its key's keyed hash (its id) whose `rev` is
/// the version it makes: it is stored only if the entry is at `rev − 1`
/// now (0: absent), so of concurrent writers of one version exactly one
/// wins. A delete is a write whose plaintext says so (the version moves on,
/// so a stale writer never overwrites a re-created key). Checked as a
/// `coord_put`; answered `state_answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSet {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The sealed, signed entry.
    pub object: Box<CoordObject>,
}

/// `lease_take`: take a file lease. `object` is a sealed, signed object of
/// kind `lease` (its repository, paths and reason, which the broker never
/// reads); `tags` are the lease's keyed path tags
/// ([`claudemesh_crypto::coord::lease_tags`], under the current epoch's
/// coordination key), `probe` the tags that meet a live lease on an
/// overlapping path ([`claudemesh_crypto::coord::lease_probe`], under the
/// current epoch and each epoch live leases were tagged under). The broker
/// grants it unless a live lease of another session holds one of `probe`
/// (and one of the two is exclusive); the check and the grant are one step
/// under the mesh's coordination lock. Answered `lease_answer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTake {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The sealed, signed lease.
    pub object: Box<CoordObject>,
    /// Exclusive (conflicts with any lease) or shared (only with exclusive ones).
    pub exclusive: bool,
    /// How long it lasts, ms ([`crate::limits::MIN_LEASE_TTL_MS`] to
    /// [`crate::limits::MAX_LEASE_TTL_MS`]).
    pub ttl_ms: u64,
    /// The lease's tags (16 per path).
    pub tags: Vec<CoordId>,
    /// The tags that meet an overlapping lease (17 per path and epoch).
    pub probe: Vec<CoordId>,
}

/// `lease_renew`: extends leases this member holds to `ttl_ms` from now.
/// Answered `lease_renewed` with those it extended (an expired or released
/// lease is gone: take it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenew {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// The leases.
    pub ids: Vec<CoordId>,
    /// The new length, from now.
    pub ttl_ms: u64,
}

/// `coord_ring`: the mesh's ring links of epochs after `after`, by epoch.
/// Answered `coord_ring_page`; ask again from its last epoch while `more`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordRingQuery {
    /// Correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<String>,
    /// Only links of epochs after this one (0: all).
    #[serde(default)]
    pub after: u64,
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
