//! The device's local state in `<home>/state.db` (SQLite, mode 0600): the
//! membership logs it verified, its inbox (stored before the broker is told
//! "delivered", so an ack never loses a message), its outbox (a sealed
//! envelope is written before it is sent and resent with the same id until
//! the broker accepts it), and the envelopes it refused. Inbound fan-out
//! messages (`#topic`, `@group`, `*`) are kept with their target, so unread
//! counts per topic and "mark this topic read" are local queries.
//!
//! The team memory mirror (notes opened on this device, an FTS5 index over
//! them, the coordination feed position) is in `memory`.
//!
//! The outbox's queries are in [`outbox`]; what the inbox owes senders as
//! signed receipts (shown, answered) and the numbers a fan-out target's
//! watermarks are made of, in [`receipts`]. The gateway's tables (API
//! keys, idempotency keys) share this file and its migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use claudemesh_crypto::envelope::{MessageId, VerifiedMessage};
use claudemesh_crypto::log::LogEntry;
use claudemesh_crypto::receipt::Via;
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::clock::now_ms;
use serde::Serialize;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqlStr};

use crate::error::ClientError;

mod coord_items;
mod memory;
mod outbox;
mod receipts;
pub use coord_items::StoredItem;
pub use memory::{MirrorChange, OpenedNote, StoredNote};
pub use outbox::{OutboxEntry, PendingSend};
pub use receipts::{AnsweredDue, HELD_WINDOW, ShownDue};

/// One migration of `migrations/client/`: (version, name, SQL).
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        (
            $version,
            $name,
            include_str!(concat!("../../../../migrations/client/", $file)),
        )
    };
}

/// The local store's migrations, in order.
const MIGRATIONS: [(i64, &str, &str); 14] = [
    migration!(1, "init", "0001_init.sql"),
    migration!(2, "spaces", "0002_spaces.sql"),
    migration!(3, "api_keys", "0003_api_keys.sql"),
    migration!(4, "idempotency", "0004_idempotency.sql"),
    migration!(5, "gateway_events", "0005_gateway_events.sql"),
    migration!(6, "receipts", "0006_receipts.sql"),
    migration!(7, "ttl", "0007_ttl.sql"),
    migration!(8, "gateway_sent", "0008_gateway_sent.sql"),
    migration!(9, "web_sessions", "0009_web_sessions.sql"),
    migration!(10, "scheduled", "0010_scheduled.sql"),
    migration!(11, "memory", "0011_memory.sql"),
    migration!(12, "tasks", "0012_tasks.sql"),
    migration!(13, "leases", "0013_leases.sql"),
    migration!(14, "withheld", "0014_withheld.sql"),
];

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// A verified message as it is shown: from this device's inbox, or from
/// a topic's stored history ([`crate::topics::topic_history`]). The two
/// share every field but a few; those are `None` where they do not apply,
/// and then not serialized.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct InboxMessage {
    /// Local row id (0: not listed from the inbox).
    #[serde(skip)]
    pub local_id: i64,
    /// The sender's message id (hex).
    pub id: String,
    /// The sender's member key (hex).
    pub from: String,
    /// The sender's display name (history; the inbox's readers label
    /// senders themselves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    /// The sender's session key (hex).
    pub from_session: String,
    /// The target as sent (`member:<hex>`, `session:<hex>`, `#topic`, …).
    pub target: String,
    /// The body, as UTF-8 (invalid sequences replaced).
    pub body: String,
    /// Priority.
    pub priority: String,
    /// The message this answers, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Sender's clock, unix ms.
    pub sent_at: u64,
    /// When this device stored it, unix ms (inbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<u64>,
    /// Broker sequence number.
    pub seq: u64,
    /// Whether it was shown (`inbox`) already (inbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<bool>,
    /// A topic, group or broadcast message whose body mentions this
    /// member's display name (`@name`).
    pub mentions_me: bool,
    /// This member posted it (history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub you: Option<bool>,
    /// The sender gave it a time to live: not shown by this time (unix
    /// ms, the broker's clock), it expires (inbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Its deadline passed before it was shown: it is no longer presented
    /// as unread, and never marked shown (listed only with read ones).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// An envelope this device refused.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// Broker seq.
    pub seq: u64,
    /// Claimed sender (hex), if readable.
    pub sender: Option<String>,
    /// Why it was refused.
    pub reason: String,
    /// Unix ms.
    pub at: u64,
}

/// A verified message to store as delivered.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The message.
    pub msg: &'a VerifiedMessage,
    /// Broker seq.
    pub seq: u64,
    /// A fan-out message's number within its target (from `deliver`).
    pub tseq: Option<u64>,
    /// Whether it mentions this member (`@name`).
    pub mentions_me: bool,
    /// The deadline the broker stamped (from `deliver`), when the sender
    /// gave it a time to live.
    pub deadline_ms: Option<u64>,
}

/// The columns [`inbox_row`] reads, in its order.
macro_rules! inbox_columns {
    () => {
        "id, msg_id, sender_member, sender_session, target, body, priority, reply_to, \
         sent_at, received_at, broker_seq, read_at, mentions_me, deadline_ms"
    };
}

/// The condition that an inbox row is unread and still presented: not
/// shown, and its deadline (if any) not passed at the time bound (`?`).
/// The one test of "unread" every listing and count uses.
macro_rules! unread_live {
    () => {
        "(read_at IS NULL AND (deadline_ms IS NULL OR deadline_ms > ?))"
    };
}

/// One inbox row (selected as [`inbox_columns`]) as it is shown.
fn inbox_row(r: &sqlx::sqlite::SqliteRow) -> Result<InboxMessage, ClientError> {
    let body: Vec<u8> = r.try_get(5)?;
    let read = r.try_get::<Option<i64>, _>(11)?.is_some();
    let deadline_ms = r.try_get::<Option<i64>, _>(13)?.map(u);
    let expired = !read && deadline_ms.is_some_and(|d| d <= now_ms());
    Ok(InboxMessage {
        local_id: r.try_get(0)?,
        id: r.try_get(1)?,
        from: r.try_get(2)?,
        from_name: None,
        from_session: r.try_get(3)?,
        target: r.try_get(4)?,
        body: String::from_utf8_lossy(&body).into_owned(),
        priority: r.try_get(6)?,
        reply_to: r.try_get(7)?,
        sent_at: u(r.try_get(8)?),
        received_at: Some(u(r.try_get(9)?)),
        seq: u(r.try_get(10)?),
        read: Some(read),
        mentions_me: r.try_get::<i64, _>(12)? != 0,
        you: None,
        deadline_ms,
        expired,
    })
}

/// The local database.
#[derive(Debug, Clone)]
pub struct LocalStore {
    pool: SqlitePool,
}

fn mesh_key(mesh: &MeshId) -> String {
    mesh.to_hex()
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl LocalStore {
    /// Opens (creating with mode 0600) the database at `path`.
    pub async fn open(path: &Path) -> Result<Self, ClientError> {
        if !path.exists() {
            // Create it private first; SQLite gives its WAL and SHM files the
            // same mode as the database file.
            crate::home::write_private_file(path, b"")?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await?;
        migrator().run(&pool).await?;
        Ok(LocalStore { pool })
    }

    /// The database itself, for the gateway's tables (`api_keys`,
    /// `idempotency_keys`), which share this file and its migrations so one
    /// home has one local store.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction that takes the write lock at its start: several
    /// processes share this database (the CLI, MCP servers), and a deferred
    /// transaction that reads before it writes fails at once with "database
    /// is locked" after another process wrote (SQLite cannot upgrade its
    /// read snapshot; the busy timeout does not apply). IMMEDIATE waits.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// The membership log this device verified for a mesh.
    pub async fn log_entries(&self, mesh: &MeshId) -> Result<Vec<LogEntry>, ClientError> {
        let rows = sqlx::query("SELECT entry FROM log_entries WHERE mesh_id = ? ORDER BY seq")
            .bind(mesh_key(mesh))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let text: &str = r.try_get(0)?;
                serde_json::from_str(text).map_err(|e| {
                    ClientError::Local(format!(
                        "the local copy of the membership log is damaged: {e}"
                    ))
                })
            })
            .collect()
    }

    /// Appends verified entries.
    pub async fn append_log(&self, mesh: &MeshId, entries: &[LogEntry]) -> Result<(), ClientError> {
        let mut tx = self.write_tx().await?;
        for e in entries {
            sqlx::query(
                "INSERT OR REPLACE INTO log_entries (mesh_id, seq, entry) VALUES (?, ?, ?)",
            )
            .bind(mesh_key(mesh))
            .bind(i(e.seq))
            .bind(serde_json::to_string(e).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores verified messages in one transaction (one fsync for a whole
    /// batch of deliveries); for each, false if it was already stored.
    pub async fn store_inbound_batch(
        &self,
        mesh: &MeshId,
        msgs: &[(&VerifiedMessage, u64)],
        received_at: u64,
    ) -> Result<Vec<bool>, ClientError> {
        let flagged: Vec<_> = msgs.iter().map(|(m, seq)| (*m, *seq, false)).collect();
        self.store_inbound_flagged(mesh, &flagged, received_at)
            .await
    }

    /// [`LocalStore::store_inbound_batch`] with, per message, whether it
    /// mentions this member.
    pub async fn store_inbound_flagged(
        &self,
        mesh: &MeshId,
        msgs: &[(&VerifiedMessage, u64, bool)],
        received_at: u64,
    ) -> Result<Vec<bool>, ClientError> {
        let numbered: Vec<_> = msgs
            .iter()
            .map(|(msg, seq, mentions_me)| Inbound {
                msg,
                seq: *seq,
                tseq: None,
                mentions_me: *mentions_me,
                deadline_ms: None,
            })
            .collect();
        self.store_inbound(mesh, &numbered, received_at).await
    }

    /// Stores verified messages as delivered (with a fan-out message's
    /// number within its target) in one transaction; for each, false if it
    /// was already stored (its number is then filled in if it lacked one).
    pub async fn store_inbound(
        &self,
        mesh: &MeshId,
        msgs: &[Inbound<'_>],
        received_at: u64,
    ) -> Result<Vec<bool>, ClientError> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            out.push(Self::insert_inbound(&mut tx, mesh, m, received_at).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn insert_inbound(
        tx: &mut sqlx::SqliteTransaction<'_>,
        mesh: &MeshId,
        m: &Inbound<'_>,
        received_at: u64,
    ) -> Result<bool, ClientError> {
        let (msg, seq, mentions_me) = (m.msg, m.seq, m.mentions_me);
        let done = sqlx::query(
            "INSERT INTO inbox (mesh_id, sender_member, sender_session, msg_id, broker_seq, target, \
             priority, reply_to, sent_at, received_at, body, mentions_me, tseq, deadline_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (mesh_id, sender_member, msg_id) DO NOTHING",
        )
        .bind(mesh_key(mesh))
        .bind(msg.sender_member().to_hex())
        .bind(msg.sender_session().to_hex())
        .bind(msg.id().to_hex())
        .bind(i(seq))
        .bind(msg.target().to_string())
        .bind(msg.priority().as_str())
        .bind(msg.reply_to().map(|r| r.to_hex()))
        .bind(i(msg.sent_at()))
        .bind(i(received_at))
        .bind(msg.body())
        .bind(i64::from(mentions_me))
        .bind(m.tseq.map(i))
        .bind(m.deadline_ms.map(i))
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        if let Some(tseq) = m.tseq {
            sqlx::query(
                "UPDATE inbox SET tseq = ? WHERE mesh_id = ? AND sender_member = ? AND msg_id = ? \
                 AND tseq IS NULL",
            )
            .bind(i(tseq))
            .bind(mesh_key(mesh))
            .bind(msg.sender_member().to_hex())
            .bind(msg.id().to_hex())
            .execute(&mut **tx)
            .await?;
        }
        Ok(false)
    }

    /// Inbox messages, oldest first: unread only, or all (then the newest
    /// `limit`). Unread means not shown and not expired: a message whose
    /// time to live ran out before it was shown is listed only with all,
    /// marked `expired`.
    pub async fn inbox(
        &self,
        mesh: &MeshId,
        unread_only: bool,
        limit: u32,
    ) -> Result<Vec<InboxMessage>, ClientError> {
        self.inbox_of(mesh, None, unread_only, limit).await
    }

    /// [`LocalStore::inbox`] of one target only (`#deploys`, `@eng`, `*`,
    /// `member:<hex>`), or of every target with `None`.
    pub async fn inbox_of(
        &self,
        mesh: &MeshId,
        target: Option<&str>,
        unread_only: bool,
        limit: u32,
    ) -> Result<Vec<InboxMessage>, ClientError> {
        let rows = sqlx::query(concat!(
            "SELECT * FROM (SELECT ",
            inbox_columns!(),
            " FROM inbox \
             WHERE mesh_id = ? AND (",
            unread_live!(),
            " OR ? = 0) AND (? IS NULL OR target = ?) \
             ORDER BY id DESC LIMIT ?) ORDER BY id",
        ))
        .bind(mesh_key(mesh))
        .bind(i(now_ms()))
        .bind(i64::from(unread_only))
        .bind(target)
        .bind(target)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(inbox_row).collect()
    }

    /// Inbox messages stored after the row `after` (a cursor: each
    /// message's `local_id`), oldest first, at most `limit`: unread only or
    /// all, of every target or of `targets` only (`#deploys`, …).
    pub async fn inbox_after(
        &self,
        mesh: &MeshId,
        after: i64,
        unread_only: bool,
        targets: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<InboxMessage>, ClientError> {
        let targets = targets.map(|t| serde_json::to_string(t).unwrap_or_default());
        let rows = sqlx::query(concat!(
            "SELECT ",
            inbox_columns!(),
            " FROM inbox WHERE mesh_id = ? AND id > ? AND (",
            unread_live!(),
            " OR ? = 0) \
             AND (? IS NULL OR target IN (SELECT value FROM json_each(?))) ORDER BY id LIMIT ?"
        ))
        .bind(mesh_key(mesh))
        .bind(after)
        .bind(i(now_ms()))
        .bind(i64::from(unread_only))
        .bind(targets.as_deref())
        .bind(targets.as_deref())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(inbox_row).collect()
    }

    /// The inbox messages with this id (one per sender that used it; a
    /// message id is random, so in practice one), oldest first.
    pub async fn inbox_by_id(
        &self,
        mesh: &MeshId,
        msg_id: &str,
    ) -> Result<Vec<InboxMessage>, ClientError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            inbox_columns!(),
            " FROM inbox WHERE mesh_id = ? AND msg_id = ? ORDER BY id"
        ))
        .bind(mesh_key(mesh))
        .bind(msg_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(inbox_row).collect()
    }

    /// The inbox message stored as row `local_id`, if it is still there.
    pub async fn inbox_row(
        &self,
        mesh: &MeshId,
        local_id: i64,
    ) -> Result<Option<InboxMessage>, ClientError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            inbox_columns!(),
            " FROM inbox WHERE mesh_id = ? AND id = ?"
        ))
        .bind(mesh_key(mesh))
        .bind(local_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(inbox_row).transpose()
    }

    /// Unread messages per target (`#deploys` → 3), for targets with any.
    pub async fn unread_by_target(
        &self,
        mesh: &MeshId,
    ) -> Result<std::collections::BTreeMap<String, u64>, ClientError> {
        let rows = sqlx::query(concat!(
            "SELECT target, COUNT(*) FROM inbox WHERE mesh_id = ? AND ",
            unread_live!(),
            " GROUP BY target"
        ))
        .bind(mesh_key(mesh))
        .bind(i(now_ms()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, u(r.try_get(1)?))))
            .collect()
    }

    /// The broker seq of a message with this id that this device received
    /// or sent (and the broker accepted), if any; with `target`, only one
    /// sent to that target (`#deploys`).
    pub async fn seq_of_message(
        &self,
        mesh: &MeshId,
        id: &MessageId,
        target: Option<&str>,
    ) -> Result<Option<u64>, ClientError> {
        let inbound: Option<i64> = sqlx::query_scalar(
            "SELECT broker_seq FROM inbox WHERE mesh_id = ? AND msg_id = ? \
             AND (? IS NULL OR target = ?) ORDER BY id LIMIT 1",
        )
        .bind(mesh_key(mesh))
        .bind(id.to_hex())
        .bind(target)
        .bind(target)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(seq) = inbound {
            return Ok(Some(u(seq)));
        }
        let sent: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT broker_seq FROM outbox WHERE mesh_id = ? AND msg_id = ? \
             AND (? IS NULL OR target = ?)",
        )
        .bind(mesh_key(mesh))
        .bind(id.to_hex())
        .bind(target)
        .bind(target)
        .fetch_optional(&self.pool)
        .await?;
        Ok(sent.flatten().map(u))
    }

    /// Forgets everything this device stored about a mesh (after leaving it).
    pub async fn forget_mesh(&self, mesh: &MeshId) -> Result<(), ClientError> {
        let mut tx = self.write_tx().await?;
        for sql in [
            "DELETE FROM log_entries WHERE mesh_id = ?",
            "DELETE FROM inbox WHERE mesh_id = ?",
            "DELETE FROM outbox WHERE mesh_id = ?",
            "DELETE FROM rejected WHERE mesh_id = ?",
            "DELETE FROM gateway_sent WHERE mesh_id = ?",
            "DELETE FROM memory_notes WHERE mesh_id = ?",
            "DELETE FROM coord_heads WHERE mesh_id = ?",
        ] {
            sqlx::query(sql)
                .bind(mesh_key(mesh))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Number of unread messages.
    pub async fn unread_count(&self, mesh: &MeshId) -> Result<u64, ClientError> {
        let n: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM inbox WHERE mesh_id = ? AND ",
            unread_live!()
        ))
        .bind(mesh_key(mesh))
        .bind(i(now_ms()))
        .fetch_one(&self.pool)
        .await?;
        Ok(u(n))
    }

    /// Unread messages for one session of this device: everything unread
    /// except what was sent to another of its sessions (`session_target`
    /// is `session:<hex>` of the one asking). A count, for status displays
    /// that refresh on every arrival.
    pub async fn unread_count_for_session(
        &self,
        mesh: &MeshId,
        session_target: &str,
    ) -> Result<u64, ClientError> {
        let n: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM inbox WHERE mesh_id = ? AND ",
            unread_live!(),
            " AND (target NOT LIKE 'session:%' OR target = ?)"
        ))
        .bind(mesh_key(mesh))
        .bind(i(now_ms()))
        .bind(session_target)
        .fetch_one(&self.pool)
        .await?;
        Ok(u(n))
    }

    /// Marks inbox rows read (shown by `inbox`): [`LocalStore::mark_shown`]
    /// with [`Via::Inbox`].
    pub async fn mark_read(
        &self,
        mesh: &MeshId,
        local_ids: &[i64],
        at: u64,
    ) -> Result<(), ClientError> {
        self.mark_shown(mesh, local_ids, at, Via::Inbox).await
    }

    /// Marks inbox rows read by sender and message id (hex), for messages
    /// known from an event rather than a listing (events carry no row id):
    /// [`LocalStore::mark_shown_by_id`] with [`Via::Inbox`].
    pub async fn mark_read_by_id(
        &self,
        mesh: &MeshId,
        messages: &[(&str, &str)],
        at: u64,
    ) -> Result<(), ClientError> {
        self.mark_shown_by_id(mesh, messages, at, Via::Inbox).await
    }

    /// Records a refused envelope.
    pub async fn reject(
        &self,
        mesh: &MeshId,
        seq: u64,
        sender: Option<&PublicKey>,
        reason: &str,
        at: u64,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO rejected (mesh_id, broker_seq, sender, reason, at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(mesh_key(mesh))
        .bind(i(seq))
        .bind(sender.map(PublicKey::to_hex))
        .bind(reason)
        .bind(i(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Refusals not yet reported to the user; marks them reported.
    pub async fn take_rejections(&self, mesh: &MeshId) -> Result<Vec<Rejection>, ClientError> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(
            "SELECT broker_seq, sender, reason, at FROM rejected WHERE mesh_id = ? AND reported = 0 ORDER BY id",
        )
        .bind(mesh_key(mesh))
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE rejected SET reported = 1 WHERE mesh_id = ?")
            .bind(mesh_key(mesh))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(Rejection {
                    seq: u(r.try_get(0)?),
                    sender: r.try_get(1)?,
                    reason: r.try_get(2)?,
                    at: u(r.try_get(3)?),
                })
            })
            .collect()
    }
}
