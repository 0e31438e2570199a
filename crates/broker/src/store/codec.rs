//! How values are stored, the same in both backends: priorities and
//! delivery states as small integers, statuses as text, keys and hashes as
//! 32-byte blobs, log entries as JSON. Reading a stored value back that is
//! not one of these is [`StoreError::Corrupt`], never a panic.

use claudemesh_crypto::envelope::Priority;
use claudemesh_crypto::log::{LogEntry, PeerType};
use claudemesh_crypto::receipt::ReceiptState;
use claudemesh_crypto::{Hash32, MeshId, PublicKey};
use claudemesh_proto::frames::{DeliveryState, EncryptedBlob, Status};

use super::error::StoreError;
use super::records::{MemberState, WatermarkRow};

/// Priority as stored: 0 now, 1 next, 2 low (so "at most" is `<=`).
pub(crate) fn priority_rank(p: Priority) -> i64 {
    match p {
        Priority::Now => 0,
        Priority::Next => 1,
        Priority::Low => 2,
    }
}

/// The inverse of [`priority_rank`].
pub(crate) fn priority_from_rank(r: i64) -> Result<Priority, StoreError> {
    Ok(match r {
        0 => Priority::Now,
        1 => Priority::Next,
        2 => Priority::Low,
        other => return Err(StoreError::Corrupt(format!("priority {other}"))),
    })
}

/// Delivery state as stored.
pub(crate) fn state_rank(s: DeliveryState) -> i64 {
    match s {
        DeliveryState::Queued => 0,
        DeliveryState::Delivered => 1,
        DeliveryState::Read => 2,
        DeliveryState::Expired => 3,
        DeliveryState::Answered => 4,
    }
}

/// The inverse of [`state_rank`], from the column's type in either
/// backend (`SMALLINT` on Postgres, `INTEGER` on SQLite).
pub(crate) fn state_from_rank(r: impl Into<i64>) -> Result<DeliveryState, StoreError> {
    Ok(match r.into() {
        0 => DeliveryState::Queued,
        1 => DeliveryState::Delivered,
        2 => DeliveryState::Read,
        3 => DeliveryState::Expired,
        4 => DeliveryState::Answered,
        other => return Err(StoreError::Corrupt(format!("delivery state {other}"))),
    })
}

/// A signed receipt's or watermark's state as stored: 1 delivered, 2
/// shown, 3 answered.
pub(crate) fn receipt_rank(s: ReceiptState) -> u8 {
    match s {
        ReceiptState::Delivered => 1,
        ReceiptState::Shown => 2,
        ReceiptState::Answered => 3,
    }
}

/// The inverse of [`receipt_rank`].
pub(crate) fn receipt_from_rank(r: i64) -> Result<ReceiptState, StoreError> {
    match r {
        1 => Ok(ReceiptState::Delivered),
        2 => Ok(ReceiptState::Shown),
        3 => Ok(ReceiptState::Answered),
        _ => Err(StoreError::Corrupt(format!("receipt state {r}"))),
    }
}

/// A watermark row from its stored columns (member, target, state, upto,
/// at, doc).
pub(crate) fn watermark_from_parts(
    mesh: &MeshId,
    member: &[u8],
    target: String,
    state: i64,
    upto: i64,
    at_ms: i64,
    doc: String,
) -> Result<WatermarkRow, StoreError> {
    Ok(WatermarkRow {
        mesh: *mesh,
        member: key_from_bytes(member)?,
        target,
        state: receipt_from_rank(state)?,
        upto: to_u64(upto),
        at_ms: to_u64(at_ms),
        doc,
    })
}

pub(crate) fn status_str(s: Status) -> &'static str {
    s.as_str()
}

pub(crate) fn status_from_str(s: &str) -> Result<Status, StoreError> {
    match s {
        "idle" => Ok(Status::Idle),
        "working" => Ok(Status::Working),
        "dnd" => Ok(Status::Dnd),
        other => Err(StoreError::Corrupt(format!("status {other:?}"))),
    }
}

pub(crate) fn key_from_bytes(b: &[u8]) -> Result<PublicKey, StoreError> {
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("key of {} bytes", b.len())))?;
    PublicKey::from_bytes(&arr).map_err(|e| StoreError::Corrupt(format!("stored key: {e}")))
}

pub(crate) fn hash_from_bytes(b: &[u8]) -> Result<Hash32, StoreError> {
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("hash of {} bytes", b.len())))?;
    Ok(Hash32(arr))
}

/// A mesh id from its stored bytes.
pub(crate) fn mesh_from_bytes(b: &[u8]) -> Result<MeshId, StoreError> {
    hash_from_bytes(b).map(MeshId)
}

pub(crate) fn entry_from_json(text: &str) -> Result<LogEntry, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("log entry: {e}")))
}

pub(crate) fn entry_to_json(e: &LogEntry) -> String {
    // A LogEntry is plain data: serialization cannot fail.
    serde_json::to_string(e).unwrap_or_default()
}

/// Rebuilds a `member_state` row (both backends store the same columns).
pub(crate) fn member_state_from_parts(
    member: &[u8],
    status: &str,
    peer_type: Option<&str>,
    summary: Option<&str>,
    last_seen_ms: i64,
) -> Result<(PublicKey, MemberState), StoreError> {
    let peer_type = peer_type
        .map(|p| {
            p.parse::<PeerType>()
                .map_err(|_| StoreError::Corrupt(format!("peer type {p:?}")))
        })
        .transpose()?;
    let summary = summary
        .map(|s| {
            serde_json::from_str::<EncryptedBlob>(s)
                .map_err(|e| StoreError::Corrupt(format!("summary: {e}")))
        })
        .transpose()?;
    Ok((
        key_from_bytes(member)?,
        MemberState {
            status: status_from_str(status)?,
            peer_type,
            summary,
            last_seen_ms: to_u64(last_seen_ms),
        },
    ))
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A key as stored: its 32 bytes.
pub(crate) fn key_bytes(k: &PublicKey) -> &[u8] {
    k.as_bytes()
}
