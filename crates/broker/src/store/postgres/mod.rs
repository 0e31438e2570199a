//! The Postgres store: for production, where several broker replicas share
//! one database. It owns the Postgres side of [`Store`]: the connection
//! pool, applying the embedded migrations under a (timed) advisory lock so
//! replicas starting together serialize, and the SQL for every operation.
//!
//! The hot path, [`Store::write_batch`], runs a constant number of
//! statements per batch (array parameters unnested server-side), not one per
//! message, so a 1000-message batch costs a handful of round trips.
//!
//! Semantics match the SQLite store exactly (the conformance tests in
//! `store/conformance.rs` run the same checks against both).
//!
//! Here: the pool, write transactions, and what only Postgres does of the
//! [`Store`] methods (the methods both backends run word for word are
//! written once, in `store/shared.rs`, and expanded here). `migrate.rs`: the
//! embedded migrations and the migration lock. `batch.rs`: the group-commit
//! batch. `pages.rs`: queues read page by page.
//! `dump.rs`: every table as text. `replicas.rs`: the
//! [`crate::store::replicas::ReplicaStore`] of several brokers on one
//! database.
//!
//! [`Store`]: crate::store::Store
//! [`Store::write_batch`]: crate::store::Store::write_batch

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use claudemesh_crypto::Hash32;
use claudemesh_crypto::{MeshId, log::LogEntry};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

mod batch;
mod dump;
mod migrate;
mod pages;
pub mod replicas;
#[cfg(test)]
mod tests;

pub use migrate::migrator;
pub use replicas::PgReplicaStore;

/// How a rank column (a priority, a delivery state) reads: `SMALLINT`.
type Rank = i16;

use crate::store::codec::{entry_to_json, to_i64};
use crate::store::error::StoreError;
use crate::store::records::{AckOp, InsertOutcome, NewMessage, SessionRecord};
use crate::store::replicas::ReplicaStore;

/// Connections per broker process. The broker's writes go through one
/// group-commit writer (one connection at a time); the rest are short reads
/// (pending queues on reconnect, logs, invites, status). 16 keeps reads from
/// queueing behind each other while leaving room for several replicas under
/// Postgres' default `max_connections = 100`.
const POOL_CONNECTIONS: u32 = 16;

/// A broker store in a Postgres database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    opts: PgConnectOptions,
    latest_migration: i64,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`), applies migrations (waiting at
    /// most `migration_lock_timeout` for another broker that is migrating),
    /// and opens the pool.
    pub async fn open(url: &str, migration_lock_timeout: Duration) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)?;
        let migrator = migrator();
        let latest_migration = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        migrate::migrate(&opts, migrator, migration_lock_timeout).await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .connect_with(opts.clone())
            .await?;
        Ok(PostgresStore {
            pool,
            opts,
            latest_migration,
        })
    }

    /// The connection pool (tests read tables directly).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction. Postgres locks the rows a statement writes as it
    /// writes them; there is no lock mode to ask for at the start.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// A log append's entries, in one statement (columns as arrays).
    async fn insert_log_entries(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        mesh: &MeshId,
        entries: &[(LogEntry, Hash32)],
    ) -> Result<(), StoreError> {
        let seqs: Vec<i64> = entries.iter().map(|(e, _)| to_i64(e.seq)).collect();
        let hashes: Vec<&[u8]> = entries.iter().map(|(_, h)| &h.0[..]).collect();
        let texts: Vec<String> = entries.iter().map(|(e, _)| entry_to_json(e)).collect();
        sqlx::query(
            "INSERT INTO log_entries (mesh_id, seq, hash, entry) \
             SELECT $1, seq, hash, entry FROM UNNEST($2::bigint[], $3::bytea[], $4::text[]) \
             AS t(seq, hash, entry)",
        )
        .bind(&mesh.as_bytes()[..])
        .bind(seqs)
        .bind(hashes)
        .bind(texts)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

super::shared::impl_store! {
    PostgresStore;

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn replicas(&self) -> Option<std::sync::Arc<dyn ReplicaStore>> {
        Some(std::sync::Arc::new(PgReplicaStore::new(
            self.pool.clone(),
            self.opts.clone(),
        )))
    }

    async fn write_batch(
        &self,
        messages: &[NewMessage],
        acks: &[AckOp],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        batch::write_batch(&self.pool, messages, acks).await
    }

    async fn record_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        // One row per (mesh, session): an upsert may not touch a row twice.
        let mut last: HashMap<(MeshId, PublicKey), &SessionRecord> = HashMap::new();
        for s in sessions {
            last.insert((s.mesh, s.session), s);
        }
        if last.is_empty() {
            return Ok(());
        }
        let (mut meshes, mut keys, mut members, mut times) = (
            Vec::with_capacity(last.len()),
            Vec::with_capacity(last.len()),
            Vec::with_capacity(last.len()),
            Vec::with_capacity(last.len()),
        );
        for s in last.values() {
            meshes.push(&s.mesh.as_bytes()[..]);
            keys.push(key_bytes(&s.session));
            members.push(key_bytes(&s.member));
            times.push(to_i64(s.at_ms));
        }
        sqlx::query(
            "INSERT INTO sessions (mesh_id, session, member, last_seen_ms) \
             SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::bigint[]) \
             ON CONFLICT (mesh_id, session) DO UPDATE SET last_seen_ms = EXCLUDED.last_seen_ms",
        )
        .bind(meshes)
        .bind(keys)
        .bind(members)
        .bind(times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
