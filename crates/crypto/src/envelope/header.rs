//! The header fields a sender chooses for an envelope ([`EnvelopeHeader`]):
//! the message id and its delivery priority among them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::encoding::{DecodeError, Hash32, decode_hex_array, hex_serde};
use crate::ids::MeshId;
use crate::keys::random_bytes;
use crate::target::Target;

/// A client-chosen message id: 16 random bytes (32 hex characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// 16 bytes from the OS CSPRNG.
    pub fn random() -> Self {
        MessageId(random_bytes())
    }

    /// Lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        decode_hex_array(s).map(MessageId)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

hex_serde!(MessageId, 16, |m: &MessageId| m.0, |b: [u8; 16]| Ok::<
    _,
    DecodeError,
>(
    MessageId(b)
));

/// Delivery priority, as Claude Code users know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Interrupt: deliver even to a busy (`working`/`dnd`) peer.
    Now,
    /// Deliver at the next idle moment (the default).
    #[default]
    Next,
    /// Deliver when convenient.
    Low,
}

impl Priority {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::Now => "now",
            Priority::Next => "next",
            Priority::Low => "low",
        }
    }
}

impl FromStr for Priority {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "now" => Ok(Priority::Now),
            "next" => Ok(Priority::Next),
            "low" => Ok(Priority::Low),
            _ => Err(DecodeError::Invalid("priority (now|next|low)")),
        }
    }
}

/// The header fields a sender chooses; the rest of an envelope is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The mesh id.
    pub mesh: MeshId,
    /// Key epoch of the body key.
    pub epoch: u64,
    /// Recipient(s).
    pub target: Target,
    /// Client message id.
    pub id: MessageId,
    /// The message answered.
    pub reply_to: Option<MessageId>,
    /// Priority.
    pub priority: Priority,
    /// Unix milliseconds.
    pub sent_at: u64,
    /// The sender's verified log head.
    pub log_head: Hash32,
}
