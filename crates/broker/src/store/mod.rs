//! The broker's durable state behind one trait, [`Store`], with two
//! backends: embedded SQLite (the default, one node) and Postgres
//! (production, several replicas). Both keep exactly the same tables (see
//! `migrations/`), hold only public keys, signed log entries, ciphertext and
//! routing metadata (TM1), and use parameterized SQL only (TM10).
//!
//! The trait is shaped by the broker's hot path: messages and acks arrive in
//! batches from the group-commit writer ([`Store::write_batch`]), one
//! transaction per batch; everything else is rare.

use std::time::Duration;

use async_trait::async_trait;
use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::{LogEntry, PeerType};
use claudemesh_crypto::{Hash32, PublicKey};
use claudemesh_proto::frames::{DeliveryState, EncryptedBlob, Status};

#[cfg(test)]
mod conformance;
pub mod postgres;
pub mod replicas;
mod sql;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed to apply.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another broker held the migration lock for too long.
    #[error("timed out after {0:?} waiting for the migration lock (another broker is migrating?)")]
    LockTimeout(Duration),
    /// A stored row could not be read back (a bug or tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database URL names a backend this broker does not have.
    #[error("unsupported database URL (use sqlite://<file> or postgres://…): {0}")]
    UnsupportedUrl(String),
}

/// A message to store: the envelope as the sender signed it (JSON, with the
/// ciphertext in base64) and the routing facts the broker derived from it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The mesh.
    pub mesh: Hash32,
    /// The sender's member key: (mesh, sender_member, id) is unique.
    pub sender_member: PublicKey,
    /// The sender's message id.
    pub id: MessageId,
    /// The target as on the wire (`member:<hex>`, `session:<hex>`, …).
    pub target: String,
    /// Delivery priority (from the signed envelope).
    pub priority: Priority,
    /// The envelope, JSON.
    pub envelope_json: String,
    /// Recipient keys (member or session): one delivery row each for a
    /// direct message; for a fan-out message only who gets it live (no rows).
    pub recipients: Vec<PublicKey>,
    /// Fan-out (`*`, `@group`, `#topic`) messages: the log length when the
    /// broker accepted it, which fixes its recipients. `None` for direct.
    pub at_len: Option<u64>,
    /// When the broker received it, unix ms.
    pub created_at_ms: u64,
    /// When retention removes it if still undelivered, unix ms.
    pub expires_at_ms: u64,
}

/// A session key seen in a hello, and the member that certified it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The mesh.
    pub mesh: Hash32,
    /// The session key.
    pub session: PublicKey,
    /// Its member.
    pub member: PublicKey,
    /// When, unix ms.
    pub at_ms: u64,
}

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertOutcome {
    /// The broker sequence number (the original one for a duplicate).
    pub seq: u64,
    /// True when (sender, id) was already stored: nothing new was written.
    pub duplicate: bool,
}

/// A recipient's acknowledgement of delivered (or read) messages. Only rows
/// addressed to `member` or `session` are touched, so a peer can never ack
/// someone else's messages.
#[derive(Debug, Clone)]
pub struct AckOp {
    /// The mesh.
    pub mesh: Hash32,
    /// The acking connection's member key.
    pub member: PublicKey,
    /// The acking connection's session key.
    pub session: PublicKey,
    /// Broker sequence numbers.
    pub seqs: Vec<u64>,
    /// `Read` or `Delivered`.
    pub state: DeliveryState,
    /// Unix ms.
    pub at_ms: u64,
    /// The fan-out targets the member may have received messages of, each
    /// with the log length above which (exclusive) it could have been a
    /// recipient (`fanout::member_targets`). A fan-out receipt is written
    /// only for a message of one of them: an ack of seqs the member never
    /// received (a private topic it is not in, made-up numbers) writes
    /// nothing.
    pub fanout_targets: Vec<(String, u64)>,
}

impl AckOp {
    /// Whether this ack may write a receipt for a fan-out message of
    /// `target` accepted at log length `at_len`.
    pub fn may_receipt(&self, target: &str, at_len: u64) -> bool {
        self.fanout_targets
            .iter()
            .any(|(t, since)| t == target && at_len > *since)
    }
}

/// How much one page of stored messages may hold: at most `rows` of them,
/// and — counting their envelopes' sizes in seq order — it stops after the
/// first that reaches `bytes` (so a page always holds at least one, and at
/// most `bytes` plus one envelope). A drain holds its page while a slow
/// reader takes it, so pages are bounded by what they weigh, not only by
/// how many they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    /// Most messages.
    pub rows: u32,
    /// Bytes of envelopes after which the page stops.
    pub bytes: u64,
}

impl PageLimit {
    /// Whether a page of `len` messages weighing `bytes` may have been cut
    /// by this limit (more may follow at once): it holds as many as it may,
    /// or its weight reached the limit (a page stops after the message that
    /// reaches it; one that stayed below was not cut).
    pub fn may_be_cut(&self, len: usize, bytes: u64) -> bool {
        len >= self.rows as usize || bytes >= self.bytes
    }
}

/// The first rows of `rows` (already in page order) within `limit`: at most
/// `limit.rows`, stopping after the row whose `weight` reaches
/// `limit.bytes` (always at least one).
pub fn first_of<T>(rows: Vec<T>, limit: PageLimit, weight: impl Fn(&T) -> u64) -> Vec<T> {
    let mut out = Vec::with_capacity(rows.len().min(limit.rows as usize));
    let mut bytes = 0u64;
    for r in rows {
        if out.len() >= limit.rows as usize || bytes >= limit.bytes {
            break;
        }
        bytes = bytes.saturating_add(weight(&r));
        out.push(r);
    }
    out
}

/// What a drain page of fan-out rows weighs: the envelopes it carries.
pub fn fanout_weight(rows: &[FanoutRow]) -> u64 {
    rows.iter()
        .map(|r| r.envelope_json.as_ref().map_or(0, |e| e.len() as u64))
        .sum()
}

impl From<u32> for PageLimit {
    /// A limit in rows only.
    fn from(rows: u32) -> Self {
        PageLimit {
            rows,
            bytes: u64::MAX / 2,
        }
    }
}

/// A stored message waiting for a recipient.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    /// Broker sequence number.
    pub seq: u64,
    /// The envelope JSON.
    pub envelope_json: String,
    /// When it was stored, unix ms.
    pub queued_at_ms: u64,
}

/// Per-recipient delivery state of one message.
#[derive(Debug, Clone)]
pub struct MessageStatus {
    /// Broker sequence number.
    pub seq: u64,
    /// Direct: each recipient and its state. Fan-out: only the recipients
    /// that acked (the broker works out the rest from the log).
    pub recipients: Vec<(PublicKey, DeliveryState)>,
    /// Set for a fan-out message.
    pub fanout: Option<FanoutFacts>,
}

/// What the store knows of a fan-out message, for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutFacts {
    /// The target as on the wire.
    pub target: String,
    /// The log length when it was accepted.
    pub at_len: u64,
    /// Retention dropped its ciphertext.
    pub expired: bool,
}

/// One fan-out message of a target, as a drain sees it for one member.
#[derive(Debug, Clone)]
pub struct FanoutRow {
    /// Broker sequence number.
    pub seq: u64,
    /// Its target as on the wire (`*`, `@group`, `#topic`).
    pub target: String,
    /// The log length when it was accepted.
    pub at_len: u64,
    /// When it was stored, unix ms.
    pub queued_at_ms: u64,
    /// The member already acked it.
    pub acked: bool,
    /// The envelope JSON; `None` when acked (not needed) or expired.
    pub envelope_json: Option<String>,
    /// The sender's member key (grants are judged against it).
    pub sender: PublicKey,
    /// Delivery priority (a drain on behalf of a busy session takes only
    /// `now`).
    pub priority: Priority,
}

/// A member's last known presence, kept for when it is offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// Last status set.
    pub status: Status,
    /// Declared peer type.
    pub peer_type: Option<PeerType>,
    /// Last encrypted summary.
    pub summary: Option<EncryptedBlob>,
    /// Last time any of its sessions was connected, unix ms.
    pub last_seen_ms: u64,
}

/// The result of an append that expected the log at a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written.
    Appended,
    /// The log is no longer at the expected length (another replica wrote).
    Conflict,
}

/// Extra rows written atomically with a log append.
#[derive(Debug, Clone, Default)]
pub struct AppendExtras {
    /// A new invite's key and its encrypted welcome bundle.
    pub new_invite: Option<(PublicKey, Vec<u8>)>,
    /// The invite an `admit` consumed (its use counter goes up by one).
    pub used_invite: Option<PublicKey>,
}

/// One table's rows rendered as text (blobs as hex), for the TM1 audit and
/// the demo.
#[derive(Debug, Clone)]
pub struct TableDump {
    /// Table name.
    pub table: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<String>>,
}

/// What a retention sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Messages whose ciphertext was dropped (still reported as `expired`).
    pub expired: u64,
    /// Tombstones removed for good.
    pub purged: u64,
}

/// The broker's storage. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// What several brokers on this database share (Postgres only): `None`
    /// means this broker is the only one and replication stays off.
    fn replicas(&self) -> Option<std::sync::Arc<dyn replicas::ReplicaStore>> {
        None
    }

    /// Whether the database answers and every migration this build knows is
    /// applied (readiness).
    async fn ready(&self) -> Result<(), StoreError>;

    /// Registers a mesh by its verified genesis entry. Returns false when it
    /// already exists (sending the same genesis twice is harmless).
    async fn create_mesh(
        &self,
        genesis: &LogEntry,
        mesh_id: Hash32,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// The whole membership log of a mesh, or `None` if there is no such mesh.
    async fn load_log(&self, mesh: &Hash32) -> Result<Option<Vec<LogEntry>>, StoreError>;

    /// Appends verified entries if the log still has `expected_len` entries,
    /// with the invite rows that go with them, atomically.
    async fn append_log(
        &self,
        mesh: &Hash32,
        expected_len: u64,
        entries: &[(LogEntry, Hash32)],
        extras: &AppendExtras,
    ) -> Result<AppendOutcome, StoreError>;

    /// The mesh and encrypted welcome bundle of an invite key.
    async fn invite_bundle(
        &self,
        invite_key: &PublicKey,
    ) -> Result<Option<(Hash32, Vec<u8>)>, StoreError>;

    /// Stores new messages (skipping duplicates) and applies acks, in one
    /// transaction. Returns one outcome per message, in order.
    async fn write_batch(
        &self,
        messages: &[NewMessage],
        acks: &[AckOp],
    ) -> Result<Vec<InsertOutcome>, StoreError>;

    /// Queued messages for a member and/or one of its sessions, with seq
    /// above `after_seq`, whose priority is at most `max_priority`
    /// (`Low` = all), oldest first.
    async fn pending(
        &self,
        mesh: &Hash32,
        recipients: &[PublicKey],
        after_seq: u64,
        max_priority: Priority,
        limit: PageLimit,
    ) -> Result<Vec<PendingMessage>, StoreError>;

    /// Fan-out messages for `member` across `targets`, oldest first, at
    /// most `limit`: for each `(target, min_at_len)`, messages of that
    /// target with seq above both `after_seq` and the member's cursor for
    /// it, accepted at a log length above `min_at_len`, not sent by
    /// `member`. Acked ones come back too (without envelope) so the caller
    /// can move the cursor. Every such message with a seq up to the last one
    /// returned is in the answer, so a full answer's last seq bounds what
    /// was looked at. One statement however many targets: a member others
    /// put in a thousand topics costs one query per drain page, not a
    /// thousand.
    async fn fanout_pages(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        targets: &[(String, u64)],
        after_seq: u64,
        limit: PageLimit,
    ) -> Result<Vec<FanoutRow>, StoreError>;
    /// Moves a member's cursor for a target forward to `seq` (never back).
    async fn advance_fanout_cursor(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        target: &str,
        seq: u64,
    ) -> Result<(), StoreError>;
    /// A target's stored fan-out messages below `before_seq`, newest first
    /// (`limit` counts in that order).
    async fn fanout_history(
        &self,
        mesh: &Hash32,
        target: &str,
        before_seq: u64,
        limit: PageLimit,
    ) -> Result<Vec<PendingMessage>, StoreError>;
    /// Delivery state of a message the member sent.
    async fn message_status(
        &self,
        mesh: &Hash32,
        sender_member: &PublicKey,
        id: &MessageId,
    ) -> Result<Option<MessageStatus>, StoreError>;

    /// Remembers a session key and the member that certified it, so messages
    /// to that session can be queued while it is offline.
    async fn record_session(
        &self,
        mesh: &Hash32,
        session: &PublicKey,
        member: &PublicKey,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Records many sessions in one transaction (the group-commit writer
    /// batches the sessions of every hello it sees).
    async fn record_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        for s in sessions {
            self.record_session(&s.mesh, &s.session, &s.member, s.at_ms)
                .await?;
        }
        Ok(())
    }

    /// The member behind a session key seen before, if any.
    async fn session_member(
        &self,
        mesh: &Hash32,
        session: &PublicKey,
    ) -> Result<Option<PublicKey>, StoreError>;

    /// Saves a member's last presence.
    async fn save_member_state(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        state: &MemberState,
    ) -> Result<(), StoreError>;

    /// Every member's last presence in a mesh.
    async fn member_states(
        &self,
        mesh: &Hash32,
    ) -> Result<Vec<(PublicKey, MemberState)>, StoreError>;

    /// Stores a member's signed grant set (`doc`, its JSON) if `version` is
    /// above the stored one (or none is stored); returns whether it stored.
    async fn save_grants(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        version: u64,
        doc: &str,
    ) -> Result<bool, StoreError>;

    /// Every member's stored grant set in a mesh, as stored (unverified).
    async fn load_grants(&self, mesh: &Hash32) -> Result<Vec<(PublicKey, String)>, StoreError>;

    /// Drops the ciphertext of undelivered messages past their expiry (they
    /// stay as tombstones reported `expired`), and removes tombstones and
    /// delivered messages older than `purge_before_ms`.
    async fn sweep_retention(
        &self,
        now_ms: u64,
        purge_before_ms: u64,
    ) -> Result<RetentionOutcome, StoreError>;

    /// Every table, every row, as text (the TM1 audit and `claudemesh demo`).
    async fn dump(&self) -> Result<Vec<TableDump>, StoreError>;
}

/// Opens the store a database URL names, applying migrations first.
pub async fn open(
    url: &str,
    migration_lock_timeout: Duration,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            PostgresStore::open(url, migration_lock_timeout).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// A database URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

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
    }
}

/// The inverse of [`state_rank`].
pub(crate) fn state_from_rank(r: i64) -> Result<DeliveryState, StoreError> {
    Ok(match r {
        0 => DeliveryState::Queued,
        1 => DeliveryState::Delivered,
        2 => DeliveryState::Read,
        3 => DeliveryState::Expired,
        other => return Err(StoreError::Corrupt(format!("delivery state {other}"))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u@h/db"),
            "postgres://u@h/db".to_owned()
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
