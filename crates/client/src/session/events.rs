//! What a live session tells its owner: the events it broadcasts, the
//! outcome of a send the broker accepted, and a sent message's delivery
//! state as proven and as reported.

use claudemesh_crypto::envelope::MessageId;
use claudemesh_proto::frames::PeerPresence;

use claudemesh_crypto::receipt::ReceiptState;

use crate::local::{InboxMessage, Rejection};
use crate::receipts::Proof;

/// Something that happened on the connection.
#[derive(Debug, Clone)]
pub enum Event {
    /// A verified message arrived and was stored in the inbox.
    Message(Box<InboxMessage>),
    /// An envelope was refused (it is never shown).
    Rejected(Rejection),
    /// A peer's presence changed.
    Presence(Box<PeerPresence>),
    /// Coordination objects of these kinds changed in the mesh (a hint
    /// pushed by the broker: sync them to see what).
    CoordChanged(Vec<claudemesh_crypto::coord::CoordKind>),
    /// The membership log grew (and was verified).
    LogChanged {
        /// New length.
        len: u64,
    },
    /// (Re)connected.
    Connected,
    /// The connection dropped; reconnecting if configured.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The client stopped for good.
    Stopped {
        /// Why.
        reason: String,
    },
    /// A key sealed to this member in a newly verified log entry does not
    /// open, or does not match its confirmation (reported, never silent).
    BadSeal(Box<crate::mesh::BadSealReport>),
}

/// A message the broker accepted, or holds to deliver later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// The message id.
    pub id: MessageId,
    /// Broker sequence number; 0 while the broker holds the message for
    /// later (`scheduled_for_ms`): it gets its seq when it is sent, which
    /// `message status` then shows.
    pub seq: u64,
    /// It had been accepted (or held) before (a resend).
    pub duplicate: bool,
    /// Held by the broker to be stored and delivered then (unix ms, the
    /// broker's clock), as it confirmed; `None`: stored and delivered now.
    pub scheduled_for_ms: Option<u64>,
}

/// Per-recipient delivery state of a sent message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    /// The message id.
    pub id: String,
    /// `pending` (not yet accepted), `failed`, `expired` (its time to live
    /// ran out before the broker accepted it), `scheduled` (the broker
    /// holds it until `deliver_at_ms`), `cancelled`, or `accepted`.
    pub state: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Broker seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The target as sent (`member:<hex>`, `#deploys`, `@eng`, `*`), when
    /// this device still has the message in its outbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Sent with a time to live: when it expires (unix ms; the broker's
    /// deadline once accepted, else this device's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Sent to be delivered later: when (unix ms, the broker's clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at_ms: Option<u64>,
    /// Each recipient.
    pub recipients: Vec<RecipientReport>,
}

/// One recipient's state: what its signed receipts and watermarks prove
/// (checked by this device, [`crate::receipts`]) and what the broker says.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecipientReport {
    /// Name (or short key).
    pub name: String,
    /// Key (hex).
    pub key: String,
    /// The highest state proven (`delivered`, `shown`, `answered`), else
    /// the broker's word (`observed`).
    pub state: String,
    /// What the broker says, unsigned: `queued`, `delivered`, `shown`,
    /// `answered` or `expired`.
    pub observed: String,
    /// The highest state a signed receipt or watermark that verifies
    /// attests; absent: nothing proven.
    pub proven: Option<ReceiptState>,
    /// Every receipt and watermark the broker handed over for this
    /// recipient, each checked (one that fails is listed with why, and
    /// proves nothing).
    pub proofs: Vec<Proof>,
}
