//! What a peer tells the others about itself: its [`Status`] and its
//! [`EncryptedBlob`] summary. Both the hello and the presence frames carry
//! them, so they live apart from either.

use claudemesh_crypto::Nonce;
use claudemesh_crypto::encoding::base64_bytes;
use serde::{Deserialize, Serialize};

/// Presence status, as Claude Code users know it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
