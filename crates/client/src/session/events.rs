//! What a live session tells its owner: the events it broadcasts, and
//! the outcome of a send the broker accepted.

use claudemesh_crypto::envelope::MessageId;
use claudemesh_proto::frames::PeerPresence;

use crate::local::{InboxMessage, Rejection};

/// Something that happened on the connection.
#[derive(Debug, Clone)]
pub enum Event {
    /// A verified message arrived and was stored in the inbox.
    Message(Box<InboxMessage>),
    /// An envelope was refused (it is never shown).
    Rejected(Rejection),
    /// A peer's presence changed.
    Presence(Box<PeerPresence>),
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

/// A message the broker accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// The message id.
    pub id: MessageId,
    /// Broker sequence number.
    pub seq: u64,
    /// It had been accepted before (a resend).
    pub duplicate: bool,
}
