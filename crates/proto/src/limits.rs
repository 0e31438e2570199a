//! Every protocol limit in one place, and the [`Limits`] a broker announces
//! in `welcome` (a broker may announce stricter values, never looser).

use serde::{Deserialize, Serialize};

/// Largest websocket text frame either side accepts, in bytes (128 KiB).
/// Checked before any JSON parsing.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;
/// Largest plaintext message body (64 KiB).
pub const MAX_BODY_BYTES: usize = claudemesh_crypto::envelope::MAX_BODY_BYTES;
/// Longest `req` correlation string.
pub const MAX_REQ_LEN: usize = 64;
/// Most message sequence numbers in one `ack`.
pub const MAX_IDS_PER_ACK: usize = 256;
/// Most receipts in one `receipt`, watermarks in one `watermark`.
pub const MAX_RECEIPTS_PER_FRAME: usize = 64;
/// Most recipients in one `message_status_result` page: each may carry a
/// few signed receipts (about 0.8 KiB each), and a page must fit a frame.
pub const MAX_STATUS_RECIPIENTS_PER_PAGE: usize = 32;
/// Most log entries in one `log_entries`, `log_append` or `invite_bundle`.
pub const MAX_LOG_ENTRIES_PER_FRAME: usize = 256;
/// Longest `broker_id`, `client` or error `message` string.
pub const MAX_LABEL_LEN: usize = 256;
/// Time a client has to send `hello` (or `invite_fetch`) after `challenge`.
pub const HELLO_TIMEOUT_MS: u64 = 10_000;
/// The broker pings every connection this often.
pub const PING_INTERVAL_MS: u64 = 30_000;
/// A connection with no frame or pong for this long is closed.
pub const IDLE_TIMEOUT_MS: u64 = 75_000;
/// Sustained frames per second per connection.
pub const RATE_PER_SEC: u32 = 500;
/// Burst of frames per connection above the sustained rate.
pub const RATE_BURST: u32 = 1000;
/// Bytes of frames queued for one connection before it is closed as a slow
/// consumer (presence updates are coalesced apart and do not count).
pub const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// `presence_set` frames per second per connection (sustained): each one is
/// copied to every other session of the mesh.
pub const PRESENCE_RATE_PER_SEC: u32 = 5;
/// Burst of `presence_set` frames per connection.
pub const PRESENCE_RATE_BURST: u32 = 20;
/// Bytes per second one member may send one broker, sustained (default).
pub const MEMBER_BYTES_PER_SEC: u32 = 1024 * 1024;
/// Sessions one member may have connected to one broker (default).
pub const MAX_SESSIONS_PER_MEMBER: u32 = 32;
/// Messages one member may hold for later (`send.deliver_at_ms`) at once;
/// one `schedule_page` lists them all within a frame.
pub const MAX_HELD_PER_MEMBER: usize = 200;
/// Most stored coordination objects (memory notes) per member.
pub const MAX_COORD_PER_MEMBER: usize = 10_000;
/// Most ring links one epoch keeps from owners and admins, besides the one
/// of the member who wrote its rekey (always taken), so a ring page of
/// whole epochs fits a frame however many admins a mesh has had.
pub const MAX_RING_LINKS_PER_EPOCH: usize = 8;
/// A `coord_page` stops adding objects once their ciphertexts pass this
/// many bytes (at least one object is always sent), so a page fits a frame.
pub const COORD_PAGE_BYTES: usize = 48 * 1024;
/// Most paths one file lease names.
pub const MAX_LEASE_PATHS: usize = 16;
/// Most key epochs one lease take or check probes under (live leases may
/// have been tagged under older epochs than the current one).
pub const MAX_LEASE_PROBE_EPOCHS: usize = 4;
/// Shortest lease.
pub const MIN_LEASE_TTL_MS: u64 = 60_000;
/// Longest lease (renewable).
pub const MAX_LEASE_TTL_MS: u64 = 24 * 3_600_000;
/// Most live leases one member holds in a mesh.
pub const MAX_LEASES_PER_MEMBER: usize = 256;
/// Most conflicting leases a refused take names.
pub const MAX_LEASE_CONFLICTS: usize = 16;
/// A refused take names conflicting leases until their stored JSON passes
/// this many bytes (at least one is always named), so the answer fits a
/// frame.
pub const LEASE_CONFLICT_BYTES: usize = 64 * 1024;
/// Largest lease plaintext (its repository, paths and reason), padded.
pub const MAX_LEASE_PLAINTEXT: usize = 8192;
/// Largest encrypted summary ciphertext in presence, in bytes.
pub const MAX_SUMMARY_CIPHERTEXT_BYTES: usize = 1024;
/// Largest invite welcome bundle, in bytes.
pub const MAX_BUNDLE_BYTES: usize = claudemesh_crypto::invite::MAX_BUNDLE_BYTES;

/// The limits a broker enforces, sent in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame in bytes.
    pub max_frame_bytes: u32,
    /// Largest message body in bytes.
    pub max_body_bytes: u32,
    /// Most seqs per `ack`.
    pub max_ids_per_ack: u32,
    /// Most log entries per frame.
    pub max_log_entries_per_frame: u32,
    /// Sustained frames per second.
    pub rate_per_sec: u32,
    /// Burst frames.
    pub rate_burst: u32,
    /// Ping interval in milliseconds.
    pub ping_interval_ms: u64,
    /// Idle timeout in milliseconds.
    pub idle_timeout_ms: u64,
    /// Sustained frames per second per member, all its sessions together
    /// (0 from a broker that does not say).
    #[serde(default)]
    pub member_rate_per_sec: u32,
    /// Burst frames per member (0 from a broker that does not say).
    #[serde(default)]
    pub member_rate_burst: u32,
    /// Sustained bytes of frames per second per member, all its sessions
    /// together (0 from a broker that does not say).
    #[serde(default)]
    pub member_bytes_per_sec: u32,
    /// Sustained `presence_set` frames per second per connection.
    #[serde(default)]
    pub presence_rate_per_sec: u32,
    /// Most sessions of one member connected at once (0: not said).
    #[serde(default)]
    pub max_sessions_per_member: u32,
    /// Bytes of frames queued for a connection before it is cut off as a
    /// slow consumer (0: not said).
    #[serde(default)]
    pub max_queued_bytes: u64,
    /// Whether this broker holds messages for later (`send.deliver_at_ms`,
    /// `schedule_list`, `schedule_cancel`); false from one that does not
    /// say, which would deliver such a message at once.
    #[serde(default)]
    pub scheduled: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: MAX_FRAME_BYTES as u32,
            max_body_bytes: MAX_BODY_BYTES as u32,
            max_ids_per_ack: MAX_IDS_PER_ACK as u32,
            max_log_entries_per_frame: MAX_LOG_ENTRIES_PER_FRAME as u32,
            rate_per_sec: RATE_PER_SEC,
            rate_burst: RATE_BURST,
            ping_interval_ms: PING_INTERVAL_MS,
            idle_timeout_ms: IDLE_TIMEOUT_MS,
            member_rate_per_sec: RATE_PER_SEC,
            member_rate_burst: RATE_BURST,
            member_bytes_per_sec: MEMBER_BYTES_PER_SEC,
            presence_rate_per_sec: PRESENCE_RATE_PER_SEC,
            max_sessions_per_member: MAX_SESSIONS_PER_MEMBER,
            max_queued_bytes: MAX_QUEUED_BYTES as u64,
            scheduled: true,
        }
    }
}
