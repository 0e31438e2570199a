//! Message envelopes: what a sender seals and signs, and what a receiver
//! verifies and opens. A [`VerifiedMessage`] can only be made by verification.
//!
//! (Type definitions; sealing, verification and opening are added by the
//! envelope work in this module.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::boxes::Nonce;
use crate::cert::SessionCert;
use crate::encoding::{DecodeError, Hash32, base64_bytes, decode_hex_array, hex_serde};
use crate::keys::{PublicKey, Signature, random_bytes};

/// Largest plaintext body a message may carry (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `@group` or `#topic` name, in bytes.
pub const MAX_TARGET_NAME_BYTES: usize = 64;

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

/// Who a message is for. Wire form (a string): `member:<64 hex>`,
/// `session:<64 hex>`, `@<group>`, `#<topic id>`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Every session of one member (direct, `crypto_box` to the member key).
    Member(PublicKey),
    /// One session (direct, `crypto_box` to the session key).
    Session(PublicKey),
    /// A group, hierarchical with `/` (`@eng` also reaches `@eng/backend`).
    Group(String),
    /// A topic, by id.
    Topic(String),
    /// Every member of the mesh.
    Broadcast,
}

impl Target {
    /// Whether the body is a `crypto_box` to one key (member or session).
    pub fn is_direct(&self) -> bool {
        matches!(self, Target::Member(_) | Target::Session(_))
    }
}

/// Group and topic names: 1–64 bytes of `[A-Za-z0-9._/-]`, not starting or
/// ending with `/`, no empty path segment.
pub fn validate_target_name(name: &str) -> Result<(), DecodeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TARGET_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !name.split('/').any(str::is_empty);
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Invalid(
            "group or topic name (1-64 of A-Z a-z 0-9 . _ - /)",
        ))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Member(k) => write!(f, "member:{k}"),
            Target::Session(k) => write!(f, "session:{k}"),
            Target::Group(g) => write!(f, "@{g}"),
            Target::Topic(t) => write!(f, "#{t}"),
            Target::Broadcast => f.write_str("*"),
        }
    }
}

impl FromStr for Target {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = |hex: &str| {
            PublicKey::from_hex(hex).map_err(|_| DecodeError::Invalid("target public key"))
        };
        if s == "*" {
            Ok(Target::Broadcast)
        } else if let Some(hex) = s.strip_prefix("member:") {
            Ok(Target::Member(key(hex)?))
        } else if let Some(hex) = s.strip_prefix("session:") {
            Ok(Target::Session(key(hex)?))
        } else if let Some(g) = s.strip_prefix('@') {
            validate_target_name(g)?;
            Ok(Target::Group(g.to_owned()))
        } else if let Some(t) = s.strip_prefix('#') {
            validate_target_name(t)?;
            Ok(Target::Topic(t.to_owned()))
        } else {
            Err(DecodeError::Invalid(
                "target (member:<hex>, session:<hex>, @group, #topic or *)",
            ))
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A sealed, signed message as it travels and is stored. The broker sees all
/// of these fields; only `ciphertext` is secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope format version (1).
    pub v: u8,
    /// The mesh id (hash of the genesis log entry).
    pub mesh: Hash32,
    /// Key generation: the mesh epoch whose keys sealed the body.
    pub epoch: u64,
    /// Who the message is for.
    pub target: Target,
    /// Client-chosen id; (sender member, id) is unique.
    pub id: MessageId,
    /// The message this one answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// Delivery priority.
    pub priority: Priority,
    /// Sender's clock, unix milliseconds.
    pub sent_at: u64,
    /// The membership-log head the sender had verified when sending.
    pub log_head: Hash32,
    /// The sender's session certificate (chains to its member key).
    pub sender: SessionCert,
    /// The box nonce.
    pub nonce: Nonce,
    /// `crypto_box` (direct) or `crypto_secretbox` (group, topic, broadcast) output.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// ed25519 signature by `sender.session` over the canonical envelope.
    pub sig: Signature,
}
