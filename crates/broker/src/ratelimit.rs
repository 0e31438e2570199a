//! The broker's rates (TM10): frames per connection and per member,
//! presence changes per connection, membership-log entries per member, each
//! a [`TokenBucket`] (proto's, which the gateway uses too); the shared ones
//! sit behind their owner's mutex ([`MemberBuckets`]: a member's frames and
//! bytes, all its sessions together).

use claudemesh_crypto::PublicKey;
pub use claudemesh_proto::ratelimit::TokenBucket;
use std::collections::HashMap;
use std::sync::Mutex;

/// What one member may send this broker, all its sessions together.
#[derive(Debug, Clone, Copy)]
pub struct MemberRates {
    /// Frames per second, sustained.
    pub frames_per_sec: u32,
    /// Frames at once.
    pub frames_burst: u32,
    /// Bytes of frames per second, sustained (what a member can make the
    /// broker store and forward).
    pub bytes_per_sec: u32,
    /// Bytes at once (at least one frame).
    pub bytes_burst: u32,
}
/// Each member's frame and byte buckets, shared by all its sessions on
/// this broker (TM10).
#[derive(Debug, Default)]
pub struct MemberBuckets {
    rates: Mutex<HashMap<PublicKey, (TokenBucket, TokenBucket)>>,
}

impl MemberBuckets {
    /// Takes one frame of `bytes` from `member`'s buckets (frames and
    /// bytes), which all its sessions on this broker share; both or neither;
    /// `Err` with the milliseconds until there is room.
    pub fn take(&self, member: &PublicKey, limits: &MemberRates, bytes: usize) -> Result<(), u64> {
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let (frames, volume) = rates.entry(*member).or_insert_with(|| {
            (
                TokenBucket::new(limits.frames_per_sec, limits.frames_burst),
                TokenBucket::new(limits.bytes_per_sec, limits.bytes_burst),
            )
        });
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        let (mut f, mut v) = (frames.clone(), volume.clone());
        f.take().and(v.take_n(bytes.min(limits.bytes_burst)))?;
        (*frames, *volume) = (f, v);
        Ok(())
    }
}
