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
//! Here: the pool and the statements that are one call each (most of them
//! shared with SQLite, in `store/sql.rs`). `migrate.rs`: the embedded
//! migrations and the migration lock. `batch.rs`: the group-commit batch.
//! `pages.rs`: queues read page by page, and a message's status.
//! `dump.rs`: every table as text. `replicas.rs`: the
//! [`crate::store::replicas::ReplicaStore`] of several brokers on one
//! database.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::LogEntry;
use claudemesh_crypto::{Hash32, PublicKey};
use sqlx::Row;
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
use crate::store::replicas::ReplicaStore;
use crate::store::sql;

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
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn replicas(&self) -> Option<std::sync::Arc<dyn ReplicaStore>> {
        Some(std::sync::Arc::new(PgReplicaStore::new(
            self.pool.clone(),
            self.opts.clone(),
        )))
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
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
        // The row lock this takes serializes concurrent appends: a second
        // replica waits, then sees the new length and gets `Conflict`.
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
        let seqs: Vec<i64> = entries.iter().map(|(e, _)| to_i64(e.seq)).collect();
        let hashes: Vec<&[u8]> = entries.iter().map(|(_, h)| &h.0[..]).collect();
        let texts: Vec<String> = entries.iter().map(|(e, _)| entry_to_json(e)).collect();
        sqlx::query(
            "INSERT INTO log_entries (mesh_id, seq, hash, entry) \
             SELECT $1, seq, hash, entry FROM UNNEST($2::bigint[], $3::bytea[], $4::text[]) \
             AS t(seq, hash, entry)",
        )
        .bind(&mesh.0[..])
        .bind(seqs)
        .bind(hashes)
        .bind(texts)
        .execute(&mut *tx)
        .await?;
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
        batch::write_batch(&self.pool, messages, acks).await
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

    async fn message_status(
        &self,
        mesh: &Hash32,
        sender_member: &PublicKey,
        id: &MessageId,
    ) -> Result<Option<MessageStatus>, StoreError> {
        pages::message_status(&self.pool, mesh, sender_member, id).await
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
        // One row per (mesh, session): an upsert may not touch a row twice.
        let mut last: HashMap<(Hash32, PublicKey), &SessionRecord> = HashMap::new();
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
            meshes.push(&s.mesh.0[..]);
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
        let mut tx = self.pool.begin().await?;
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
