//! The embedded SQLite store: the default, for one broker on one machine.
//! WAL journal with `synchronous = FULL`, so a commit the broker has
//! acknowledged survives a crash or power loss; the group-commit writer makes
//! that affordable by putting many messages in one transaction.
//!
//! Here: the pool, write transactions, and the statements that are one call
//! each (most of them shared with Postgres, in `store/sql.rs`).
//! `migrate.rs`: the embedded migrations. `values.rs`: multi-row `VALUES`
//! lists (SQLite has no arrays). `batch.rs`: the group-commit batch.
//! `pages.rs`: queues read page by page, and a message's status.
//! `dump.rs`: every table as text.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::LogEntry;
use claudemesh_crypto::{Hash32, PublicKey};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

mod batch;
mod dump;
mod migrate;
mod pages;
mod values;

pub use migrate::migrator;
use values::{ROWS_PER_STATEMENT, placeholders};

use crate::store::api::Store;
use crate::store::codec::{
    entry_from_json, entry_to_json, hash_from_bytes, key_bytes, key_from_bytes,
    member_state_from_parts, status_str, to_i64,
};
use crate::store::error::StoreError;
use crate::store::records::{
    AckOp, AppendExtras, AppendOutcome, FanoutRow, InsertOutcome, MemberState, MessageStatus,
    NewMessage, PageLimit, PendingMessage, RetentionOutcome, SessionRecord, TableDump,
};
use crate::store::sql;

/// A broker store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    latest_migration: i64,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`,
    /// `sqlite::memory:`) and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // An in-memory database exists per connection: keep exactly one.
        let max = if url.contains(":memory:") { 1 } else { 4 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(opts)
            .await?;
        let migrator = migrator();
        migrator.run(&pool).await?;
        let latest_migration = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        Ok(SqliteStore {
            pool,
            latest_migration,
        })
    }

    /// The connection pool (tests read tables directly).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction that takes the write lock at its start. A
    /// deferred one that reads first (the acks' SELECT, a log append's
    /// length check) fails at once with "database is locked" when it then
    /// writes after another connection wrote: SQLite cannot upgrade such a
    /// read snapshot, and the busy timeout does not apply. IMMEDIATE waits
    /// (up to the busy timeout) for the lock instead.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let applied: i64 = sqlx::query_scalar(sql::MIGRATIONS_APPLIED)
            .fetch_one(&self.pool)
            .await?;
        if applied < self.latest_migration {
            return Err(StoreError::Corrupt(format!(
                "migration {} of {} applied",
                applied, self.latest_migration
            )));
        }
        Ok(())
    }

    async fn create_mesh(
        &self,
        genesis: &LogEntry,
        mesh_id: Hash32,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(sql::INSERT_MESH)
            .bind(&mesh_id.0[..])
            .bind(to_i64(now_ms))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        sqlx::query(sql::INSERT_GENESIS)
            .bind(&mesh_id.0[..])
            .bind(entry_to_json(genesis))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn load_log(&self, mesh: &Hash32) -> Result<Option<Vec<LogEntry>>, StoreError> {
        let rows = sqlx::query(sql::LOAD_LOG)
            .bind(&mesh.0[..])
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(text) = r.try_get::<Option<&str>, _>(0)? {
                out.push(entry_from_json(text)?);
            }
        }
        Ok(Some(out))
    }

    async fn append_log(
        &self,
        mesh: &Hash32,
        expected_len: u64,
        entries: &[(LogEntry, Hash32)],
        extras: &AppendExtras,
    ) -> Result<AppendOutcome, StoreError> {
        let Some((_, head)) = entries.last() else {
            return Ok(AppendOutcome::Appended);
        };
        let new_len = expected_len + entries.len() as u64;
        let mut tx = self.write_tx().await?;
        let moved = sqlx::query(sql::MOVE_LOG_HEAD)
            .bind(to_i64(new_len))
            .bind(&head.0[..])
            .bind(&mesh.0[..])
            .bind(to_i64(expected_len))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved == 0 {
            return Ok(AppendOutcome::Conflict);
        }
        for (entry, hash) in entries {
            sqlx::query("INSERT INTO log_entries (mesh_id, seq, hash, entry) VALUES (?, ?, ?, ?)")
                .bind(&mesh.0[..])
                .bind(to_i64(entry.seq))
                .bind(&hash.0[..])
                .bind(entry_to_json(entry))
                .execute(&mut *tx)
                .await?;
        }
        if let Some((key, bundle)) = &extras.new_invite {
            sqlx::query(sql::INSERT_INVITE)
                .bind(key_bytes(key))
                .bind(&mesh.0[..])
                .bind(&bundle[..])
                .bind(to_i64(crate::now_ms()))
                .execute(&mut *tx)
                .await?;
        }
        if let Some(key) = &extras.used_invite {
            sqlx::query(sql::USE_INVITE)
                .bind(key_bytes(key))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(AppendOutcome::Appended)
    }

    async fn invite_bundle(
        &self,
        invite_key: &PublicKey,
    ) -> Result<Option<(Hash32, Vec<u8>)>, StoreError> {
        let row = sqlx::query(sql::INVITE_BUNDLE)
            .bind(key_bytes(invite_key))
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                hash_from_bytes(r.try_get::<&[u8], _>(0)?)?,
                r.try_get::<Vec<u8>, _>(1)?,
            ))),
        }
    }

    async fn write_batch(
        &self,
        messages: &[NewMessage],
        acks: &[AckOp],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        let tx = self.write_tx().await?;
        batch::write_batch(tx, messages, acks).await
    }

    async fn pending(
        &self,
        mesh: &Hash32,
        recipients: &[PublicKey],
        after_seq: u64,
        max_priority: Priority,
        limit: PageLimit,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        pages::pending(&self.pool, mesh, recipients, after_seq, max_priority, limit).await
    }

    async fn message_status(
        &self,
        mesh: &Hash32,
        sender_member: &PublicKey,
        id: &MessageId,
    ) -> Result<Option<MessageStatus>, StoreError> {
        pages::message_status(&self.pool, mesh, sender_member, id).await
    }

    async fn fanout_pages(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        targets: &[(String, u64)],
        after_seq: u64,
        limit: PageLimit,
    ) -> Result<Vec<FanoutRow>, StoreError> {
        pages::fanout_pages(&self.pool, mesh, member, targets, after_seq, limit).await
    }

    async fn advance_fanout_cursor(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        target: &str,
        seq: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::ADVANCE_FANOUT_CURSOR)
            .bind(&mesh.0[..])
            .bind(key_bytes(member))
            .bind(target)
            .bind(to_i64(seq))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn fanout_history(
        &self,
        mesh: &Hash32,
        target: &str,
        before_seq: u64,
        limit: PageLimit,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        pages::fanout_history(&self.pool, mesh, target, before_seq, limit).await
    }

    async fn record_session(
        &self,
        mesh: &Hash32,
        session: &PublicKey,
        member: &PublicKey,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::RECORD_SESSION)
            .bind(&mesh.0[..])
            .bind(key_bytes(session))
            .bind(key_bytes(member))
            .bind(to_i64(now_ms))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO sessions (mesh_id, session, member, last_seen_ms) VALUES {} \
                 ON CONFLICT (mesh_id, session) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                placeholders(chunk.len(), 4)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for s in chunk {
                q = q
                    .bind(&s.mesh.0[..])
                    .bind(key_bytes(&s.session))
                    .bind(key_bytes(&s.member))
                    .bind(to_i64(s.at_ms));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn session_member(
        &self,
        mesh: &Hash32,
        session: &PublicKey,
    ) -> Result<Option<PublicKey>, StoreError> {
        let row = sqlx::query(sql::SESSION_MEMBER)
            .bind(&mesh.0[..])
            .bind(key_bytes(session))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| key_from_bytes(r.try_get::<&[u8], _>(0)?))
            .transpose()
    }

    async fn save_member_state(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        state: &MemberState,
    ) -> Result<(), StoreError> {
        let summary = state
            .summary
            .as_ref()
            .map(|s| serde_json::to_string(s).unwrap_or_default());
        sqlx::query(sql::SAVE_MEMBER_STATE)
            .bind(&mesh.0[..])
            .bind(key_bytes(member))
            .bind(status_str(state.status))
            .bind(state.peer_type.map(|p| p.as_str()))
            .bind(summary)
            .bind(to_i64(state.last_seen_ms))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn member_states(
        &self,
        mesh: &Hash32,
    ) -> Result<Vec<(PublicKey, MemberState)>, StoreError> {
        let rows = sqlx::query(sql::MEMBER_STATES)
            .bind(&mesh.0[..])
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(member_state_from_parts(
                r.try_get::<&[u8], _>(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            )?);
        }
        Ok(out)
    }

    async fn save_grants(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        version: u64,
        doc: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::SAVE_GRANTS)
            .bind(&mesh.0[..])
            .bind(key_bytes(member))
            .bind(to_i64(version))
            .bind(doc)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn load_grants(&self, mesh: &Hash32) -> Result<Vec<(PublicKey, String)>, StoreError> {
        let rows = sqlx::query(sql::LOAD_GRANTS)
            .bind(&mesh.0[..])
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push((key_from_bytes(r.try_get::<&[u8], _>(0)?)?, r.try_get(1)?));
        }
        Ok(out)
    }

    async fn sweep_retention(
        &self,
        now_ms: u64,
        purge_before_ms: u64,
    ) -> Result<RetentionOutcome, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(sql::EXPIRE_DELIVERIES)
            .bind(to_i64(now_ms))
            .execute(&mut *tx)
            .await?;
        let expired = sqlx::query(sql::EXPIRE_MESSAGES)
            .bind(to_i64(now_ms))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let purged = sqlx::query(sql::PURGE_MESSAGES)
            .bind(to_i64(purge_before_ms))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(RetentionOutcome { expired, purged })
    }

    async fn dump(&self) -> Result<Vec<TableDump>, StoreError> {
        dump::dump(&self.pool).await
    }
}
