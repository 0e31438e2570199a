//! The embedded SQLite store: the default, for one broker on one machine.
//! WAL journal with `synchronous = FULL`, so a commit the broker has
//! acknowledged survives a crash or power loss; the group-commit writer makes
//! that affordable by putting many messages in one transaction.
//!
//! Here: the pool, write transactions, and what only SQLite does of the
//! [`Store`](crate::store::Store) methods (the methods both backends run
//! word for word are written once, in `store/shared.rs`, and expanded here).
//! `migrate.rs`: the embedded migrations. `values.rs`: multi-row `VALUES`
//! lists (SQLite has no arrays). `batch.rs`: the group-commit batch.
//! `pages.rs`: queues read page by page.
//! `dump.rs`: every table as text.

use std::str::FromStr;
use std::time::Duration;

use claudemesh_crypto::Hash32;
use claudemesh_crypto::{MeshId, log::LogEntry};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod batch;
mod dump;
mod migrate;
mod pages;
mod values;

pub use migrate::migrator;
use values::{ROWS_PER_STATEMENT, placeholders};

/// How a rank column (a priority, a delivery state) reads: `INTEGER`.
type Rank = i64;

use crate::store::codec::{entry_to_json, to_i64};
use crate::store::error::StoreError;
use crate::store::records::{AckOp, InsertOutcome, NewMessage, SessionRecord};

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

    /// A log append's entries, one statement each.
    async fn insert_log_entries(
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        mesh: &MeshId,
        entries: &[(LogEntry, Hash32)],
    ) -> Result<(), StoreError> {
        for (entry, hash) in entries {
            sqlx::query("INSERT INTO log_entries (mesh_id, seq, hash, entry) VALUES (?, ?, ?, ?)")
                .bind(&mesh.as_bytes()[..])
                .bind(to_i64(entry.seq))
                .bind(&hash.0[..])
                .bind(entry_to_json(entry))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

super::shared::impl_store! {
    SqliteStore;

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn write_batch(
        &self,
        messages: &[NewMessage],
        acks: &[AckOp],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        let tx = self.write_tx().await?;
        batch::write_batch(tx, messages, acks).await
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
                    .bind(&s.mesh.as_bytes()[..])
                    .bind(key_bytes(&s.session))
                    .bind(key_bytes(&s.member))
                    .bind(to_i64(s.at_ms));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
