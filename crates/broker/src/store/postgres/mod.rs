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

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::LogEntry;
use claudemesh_crypto::{Hash32, PublicKey};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Row, SqlStr};

pub mod replicas;

pub use replicas::PgReplicaStore;

use super::replicas::ReplicaStore;
use super::sql;
use super::{
    AckOp, AppendExtras, AppendOutcome, FanoutFacts, FanoutRow, InsertOutcome, MemberState,
    MessageStatus, NewMessage, PageLimit, PendingMessage, RetentionOutcome, SessionRecord, Store,
    StoreError, TableDump, entry_from_json, entry_to_json, hash_from_bytes, key_from_bytes,
    priority_from_rank, priority_rank, state_from_rank, state_rank, status_str, to_i64, to_u64,
};

/// Connections per broker process. The broker's writes go through one
/// group-commit writer (one connection at a time); the rest are short reads
/// (pending queues on reconnect, logs, invites, status). 16 keeps reads from
/// queueing behind each other while leaving room for several replicas under
/// Postgres' default `max_connections = 100`.
const POOL_CONNECTIONS: u32 = 16;

/// The advisory-lock key claudemesh brokers take while migrating: the ASCII
/// bytes of "claudems" as a big-endian i64. Advisory locks are scoped to the
/// current database, so brokers on other databases of the same server never
/// contend for it.
const MIGRATION_LOCK_KEY: i64 = 0x636c_6175_6465_6d73;

/// How often a broker retries the migration lock while another holds it.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// The Postgres migrations, embedded in the binary.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../../migrations/postgres/0001_init.sql"
            )),
            false,
        ),
        Migration::new(
            2,
            "fanout".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../../migrations/postgres/0002_fanout.sql"
            )),
            false,
        ),
        Migration::new(
            3,
            "grants".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../../migrations/postgres/0003_grants.sql"
            )),
            false,
        ),
        Migration::new(
            4,
            "replicas".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../../migrations/postgres/0004_replicas.sql"
            )),
            false,
        ),
    ])
}

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
        migrate(&opts, migrator, migration_lock_timeout).await?;
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

/// Applies `migrator` on one dedicated connection, holding the claudemesh
/// advisory lock. sqlx's own lock (`pg_advisory_lock`) waits forever, so it
/// is turned off and replaced by polling `pg_try_advisory_lock` until
/// `timeout`. The connection is closed at the end, which also releases the
/// lock should the explicit unlock not run (a session-level lock dies with
/// its session; a pooled connection would have kept it).
async fn migrate(
    opts: &PgConnectOptions,
    mut migrator: Migrator,
    timeout: Duration,
) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect_with(opts).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            // Best effort: the error that matters is the timeout.
            let _ = conn.close().await;
            return Err(StoreError::LockTimeout(timeout));
        }
        tokio::time::sleep(LOCK_POLL.min(deadline - now)).await;
    }
    migrator.set_locking(false);
    // `run_direct` is what `run` calls after acquiring; calling it on the
    // connection directly keeps this future `Send` for any lifetime (`run`
    // with a `&mut PgConnection` hits "implementation of `Acquire` is not
    // general enough" once the future is spawned).
    let applied = migrator.run_direct(None, &mut conn, false).await;
    let released = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .fetch_one(&mut conn)
        .await;
    // Closing ends the session, so the lock is gone whatever happened above.
    let closed = conn.close().await;
    applied?;
    released?;
    closed?;
    Ok(())
}

fn key_bytes(k: &PublicKey) -> &[u8] {
    k.as_bytes()
}

/// A priority or delivery state as stored (`SMALLINT`). Ranks are 0..=3.
fn small(rank: i64) -> i16 {
    i16::try_from(rank).unwrap_or(i16::MAX)
}

/// A message's identity: (mesh, sender member, message id).
type MessageKey = ([u8; 32], [u8; 32], [u8; 16]);

fn message_key(m: &NewMessage) -> MessageKey {
    (m.mesh.0, m.sender_member.to_bytes(), m.id.0)
}

fn message_key_from_row(row: &sqlx::postgres::PgRow) -> Result<(MessageKey, i64), StoreError> {
    fn arr<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], StoreError> {
        b.try_into()
            .map_err(|_| StoreError::Corrupt(format!("{what} of {} bytes", b.len())))
    }
    let seq: i64 = row.try_get("seq")?;
    let mesh = arr::<32>(row.try_get::<&[u8], _>("mesh_id")?, "mesh id")?;
    let sender = arr::<32>(row.try_get::<&[u8], _>("sender_member")?, "sender key")?;
    let id = arr::<16>(row.try_get::<&[u8], _>("msg_id")?, "message id")?;
    Ok(((mesh, sender, id), seq))
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
        if messages.is_empty() && acks.is_empty() {
            return Ok(Vec::new());
        }
        // A batch is all or nothing, so one that lost a deadlock (two
        // replicas acking the same rows in another order, or racing the
        // retention sweep) is simply run again.
        let mut attempt = 1;
        loop {
            match write_batch_once(&self.pool, messages, acks).await {
                Err(StoreError::Db(e)) if attempt < BATCH_ATTEMPTS && is_transient(&e) => {
                    tracing::debug!("write batch attempt {attempt} failed, retrying: {e}");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn pending(
        &self,
        mesh: &Hash32,
        recipients: &[PublicKey],
        after_seq: u64,
        max_priority: Priority,
        limit: PageLimit,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&[u8]> = recipients.iter().map(key_bytes).collect();
        // The queue comes from the partial index on deliveries (state = 0),
        // then the messages by primary key; DISTINCT keeps a message
        // addressed to both the member and its session from coming twice,
        // and (a subquery with DISTINCT is never flattened) keeps the planner
        // from walking the whole messages table in seq order instead. The
        // page is cut by the weight of its envelopes before any is read.
        let rows = sqlx::query(
            "WITH page AS (SELECT m.seq, m.size \
               FROM (SELECT DISTINCT d.seq FROM deliveries d WHERE d.mesh_id = $1 \
                     AND d.recipient = ANY($2::bytea[]) AND d.state = 0 AND d.seq > $3) p \
               JOIN messages m ON m.seq = p.seq \
               WHERE m.priority <= $4 AND m.envelope IS NOT NULL \
               ORDER BY m.seq LIMIT $5), \
             cut AS (SELECT seq FROM (SELECT seq, \
               SUM(size) OVER (ORDER BY seq) - size AS before FROM page) w WHERE before < $6) \
             SELECT m.seq, m.envelope, m.created_at_ms FROM cut \
             JOIN messages m ON m.seq = cut.seq ORDER BY m.seq",
        )
        .bind(&mesh.0[..])
        .bind(keys)
        .bind(to_i64(after_seq))
        .bind(small(priority_rank(max_priority)))
        .bind(i64::from(limit.rows))
        .bind(to_i64(limit.bytes))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(PendingMessage {
                seq: to_u64(r.try_get(0)?),
                envelope_json: r.try_get(1)?,
                queued_at_ms: to_u64(r.try_get(2)?),
            });
        }
        Ok(out)
    }

    async fn fanout_pages(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        targets: &[(String, u64)],
        after_seq: u64,
        limit: PageLimit,
    ) -> Result<Vec<FanoutRow>, StoreError> {
        let (names, since): (Vec<&str>, Vec<i64>) = targets
            .iter()
            .map(|(t, s)| (t.as_str(), to_i64(*s)))
            .unzip();
        // For each target its first rows (an index range scan each,
        // LATERAL); the first of all, cut by the weight of the envelopes it
        // returns (an acked row returns none); then the envelopes of only
        // those.
        let rows = sqlx::query(
            "WITH page AS (SELECT m.seq, m.size, r.seq IS NOT NULL AS acked \
               FROM UNNEST($3::text[], $4::bigint[]) AS t(target, since) \
               CROSS JOIN LATERAL ( \
                 SELECT m2.seq FROM messages m2 \
                 WHERE m2.mesh_id = $1 AND m2.target = t.target AND m2.at_len IS NOT NULL \
                 AND m2.at_len > t.since AND m2.sender_member <> $2 AND m2.seq > $5 \
                 AND m2.seq > COALESCE((SELECT c.seq FROM fanout_cursors c \
                   WHERE c.mesh_id = $1 AND c.member = $2 AND c.target = t.target), 0) \
                 ORDER BY m2.seq LIMIT $6) s \
               JOIN messages m ON m.seq = s.seq \
               LEFT JOIN fanout_receipts r ON r.mesh_id = m.mesh_id AND r.member = $2 \
                 AND r.seq = m.seq \
               ORDER BY m.seq LIMIT $6), \
             weighed AS (SELECT seq, acked, CASE WHEN acked THEN 0 ELSE size END AS w \
               FROM page), \
             cut AS (SELECT seq, acked FROM (SELECT seq, acked, \
               SUM(w) OVER (ORDER BY seq) - w AS before FROM weighed) x WHERE before < $7) \
             SELECT m.seq, m.target, m.at_len, m.created_at_ms, cut.acked, \
             CASE WHEN cut.acked THEN NULL ELSE m.envelope END, m.sender_member, m.priority \
             FROM cut JOIN messages m ON m.seq = cut.seq ORDER BY m.seq",
        )
        .bind(&mesh.0[..])
        .bind(key_bytes(member))
        .bind(names)
        .bind(since)
        .bind(to_i64(after_seq))
        .bind(i64::from(limit.rows))
        .bind(to_i64(limit.bytes))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(FanoutRow {
                    seq: to_u64(r.try_get(0)?),
                    target: r.try_get(1)?,
                    at_len: to_u64(r.try_get(2)?),
                    queued_at_ms: to_u64(r.try_get(3)?),
                    acked: r.try_get(4)?,
                    envelope_json: r.try_get(5)?,
                    sender: key_from_bytes(r.try_get::<&[u8], _>(6)?)?,
                    priority: priority_from_rank(i64::from(r.try_get::<i16, _>(7)?))?,
                })
            })
            .collect()
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
        let rows = sqlx::query(sql::FANOUT_HISTORY)
            .bind(&mesh.0[..])
            .bind(target)
            .bind(to_i64(before_seq))
            .bind(i64::from(limit.rows))
            .bind(to_i64(limit.bytes))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(PendingMessage {
                    seq: to_u64(r.try_get(0)?),
                    envelope_json: r.try_get(1)?,
                    queued_at_ms: to_u64(r.try_get(2)?),
                })
            })
            .collect()
    }

    async fn message_status(
        &self,
        mesh: &Hash32,
        sender_member: &PublicKey,
        id: &MessageId,
    ) -> Result<Option<MessageStatus>, StoreError> {
        let facts = sqlx::query(sql::FANOUT_FACTS)
            .bind(&mesh.0[..])
            .bind(key_bytes(sender_member))
            .bind(&id.0[..])
            .fetch_optional(&self.pool)
            .await?;
        let fanout = match facts {
            Some(f) => Some(FanoutFacts {
                target: f.try_get(0)?,
                at_len: to_u64(f.try_get(1)?),
                expired: f.try_get(2)?,
            }),
            None => None,
        };
        // A fan-out message's per-recipient state is its receipts; a direct
        // one's is its delivery rows.
        let statement = if fanout.is_some() {
            sql::MESSAGE_RECEIPTS
        } else {
            sql::MESSAGE_DELIVERIES
        };
        let rows = sqlx::query(statement)
            .bind(&mesh.0[..])
            .bind(key_bytes(sender_member))
            .bind(&id.0[..])
            .fetch_all(&self.pool)
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let seq: i64 = first.try_get(0)?;
        let mut recipients = Vec::with_capacity(rows.len());
        for r in &rows {
            let recipient: Option<&[u8]> = r.try_get(1)?;
            let state: Option<i16> = r.try_get(2)?;
            if let (Some(recipient), Some(state)) = (recipient, state) {
                recipients.push((
                    key_from_bytes(recipient)?,
                    state_from_rank(i64::from(state))?,
                ));
            }
        }
        Ok(Some(MessageStatus {
            seq: to_u64(seq),
            recipients,
            fanout,
        }))
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
            out.push(super::member_state_from_parts(
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
        // One snapshot for every table.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             ORDER BY table_name::text COLLATE \"C\"",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(tables.len());
        for table in tables {
            let cols = sqlx::query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
            )
            .bind(&table)
            .fetch_all(&mut *tx)
            .await?;
            let mut columns = Vec::with_capacity(cols.len());
            let mut select = Vec::with_capacity(cols.len());
            for c in &cols {
                let name: String = c.try_get(0)?;
                let data_type: String = c.try_get(1)?;
                select.push(render_column(&name, &data_type));
                columns.push(name);
            }
            if columns.is_empty() {
                continue;
            }
            // Table and column names come from Postgres' own catalog, never
            // from a peer; they are quoted as identifiers all the same.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {} FROM {}",
                select.join(", "),
                quote_ident(&table)
            )))
            .fetch_all(&mut *tx)
            .await?;
            let mut values = Vec::with_capacity(rows.len());
            for r in rows {
                let mut row = Vec::with_capacity(columns.len());
                for i in 0..columns.len() {
                    row.push(r.try_get::<String, _>(i)?);
                }
                values.push(row);
            }
            out.push(TableDump {
                table,
                columns,
                rows: values,
            });
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// How many times a batch is tried when it deadlocks or fails to serialize.
const BATCH_ATTEMPTS: u32 = 3;

/// Whether `e` is a deadlock (`40P01`) or serialization failure (`40001`):
/// the transaction was rolled back and may simply be run again.
fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e.as_database_error().and_then(|d| d.code()).as_deref(),
        Some("40P01" | "40001")
    )
}

/// One attempt at [`Store::write_batch`]: one transaction, at most five
/// statements whatever the batch size.
async fn write_batch_once(
    pool: &PgPool,
    messages: &[NewMessage],
    acks: &[AckOp],
) -> Result<Vec<InsertOutcome>, StoreError> {
    let mut tx = pool.begin().await?;
    let out = if messages.is_empty() {
        Vec::new()
    } else {
        insert_messages(&mut tx, messages).await?
    };
    apply_acks(&mut tx, acks).await?;
    tx.commit().await?;
    Ok(out)
}

/// Stores `messages` (skipping duplicates) and their delivery rows.
///
/// Seqs follow the input order: they are taken from the identity sequence
/// first (ascending), one per input. The rows are then inserted sorted by
/// (mesh, sender, id), so two replicas storing overlapping batches lock the
/// unique index in the same order and cannot deadlock; among in-batch
/// duplicates the first input (lowest seq) is inserted, the others conflict.
async fn insert_messages(
    tx: &mut sqlx::PgTransaction<'_>,
    messages: &[NewMessage],
) -> Result<Vec<InsertOutcome>, StoreError> {
    let n = messages.len();
    let mut seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('messages', 'seq')) \
         FROM generate_series(1, $1::integer)",
    )
    .bind(i32::try_from(n).unwrap_or(i32::MAX))
    .fetch_all(&mut **tx)
    .await?;
    if seqs.len() != n {
        return Err(StoreError::Corrupt(format!(
            "{} sequence numbers for {n} messages",
            seqs.len()
        )));
    }
    seqs.sort_unstable();

    let mut meshes = Vec::with_capacity(n);
    let mut senders = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    let mut priorities = Vec::with_capacity(n);
    let mut envelopes = Vec::with_capacity(n);
    let mut sizes = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut at_lens: Vec<Option<i64>> = Vec::with_capacity(n);
    for m in messages {
        at_lens.push(m.at_len.map(to_i64));
        meshes.push(&m.mesh.0[..]);
        senders.push(key_bytes(&m.sender_member));
        ids.push(&m.id.0[..]);
        targets.push(m.target.as_str());
        priorities.push(small(priority_rank(m.priority)));
        envelopes.push(m.envelope_json.as_str());
        sizes.push(i32::try_from(m.envelope_json.len()).unwrap_or(i32::MAX));
        created.push(to_i64(m.created_at_ms));
        expires.push(to_i64(m.expires_at_ms));
    }
    // 1. Insert all; duplicates (stored, or earlier in this batch) are skipped.
    let inserted = sqlx::query(
        "INSERT INTO messages (seq, mesh_id, sender_member, msg_id, target, priority, envelope, \
         size, created_at_ms, expires_at_ms, at_len) OVERRIDING SYSTEM VALUE \
         SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[], $5::text[], \
         $6::smallint[], $7::text[], $8::integer[], $9::bigint[], $10::bigint[], $11::bigint[]) \
         AS t(seq, mesh_id, sender_member, msg_id, target, priority, envelope, size, \
         created_at_ms, expires_at_ms, at_len) \
         ORDER BY mesh_id, sender_member, msg_id, seq \
         ON CONFLICT (mesh_id, sender_member, msg_id) DO NOTHING \
         RETURNING seq, mesh_id, sender_member, msg_id",
    )
    .bind(&seqs)
    .bind(meshes)
    .bind(senders)
    .bind(ids)
    .bind(targets)
    .bind(priorities)
    .bind(envelopes)
    .bind(sizes)
    .bind(created)
    .bind(expires)
    .bind(at_lens)
    .fetch_all(&mut **tx)
    .await?;

    // 2. An input whose seq came back is new; a later input with the same
    //    key is a duplicate of it.
    let mut known: HashMap<MessageKey, i64> = HashMap::with_capacity(n);
    for row in &inserted {
        let (key, seq) = message_key_from_row(row)?;
        known.insert(key, seq);
    }
    let mut out: Vec<Option<InsertOutcome>> = Vec::with_capacity(n);
    let mut missing: Vec<usize> = Vec::new();
    for (i, (m, seq)) in messages.iter().zip(&seqs).enumerate() {
        match known.get(&message_key(m)) {
            Some(stored) => out.push(Some(InsertOutcome {
                seq: to_u64(*stored),
                duplicate: stored != seq,
            })),
            None => {
                out.push(None);
                missing.push(i);
            }
        }
    }

    // 3. Look up the seqs of duplicates stored before this batch.
    if !missing.is_empty() {
        let d_meshes: Vec<&[u8]> = missing.iter().map(|&i| &messages[i].mesh.0[..]).collect();
        let d_senders: Vec<&[u8]> = missing
            .iter()
            .map(|&i| key_bytes(&messages[i].sender_member))
            .collect();
        let d_ids: Vec<&[u8]> = missing.iter().map(|&i| &messages[i].id.0[..]).collect();
        let rows = sqlx::query(
            "SELECT m.seq, m.mesh_id, m.sender_member, m.msg_id FROM messages m \
             JOIN UNNEST($1::bytea[], $2::bytea[], $3::bytea[]) AS k(mesh_id, sender, id) \
             ON m.mesh_id = k.mesh_id AND m.sender_member = k.sender AND m.msg_id = k.id",
        )
        .bind(d_meshes)
        .bind(d_senders)
        .bind(d_ids)
        .fetch_all(&mut **tx)
        .await?;
        for row in &rows {
            let (key, seq) = message_key_from_row(row)?;
            known.insert(key, seq);
        }
        for i in missing {
            // The insert conflicted, so the row existed; only a concurrent
            // purge can have removed it since.
            let seq = known
                .get(&message_key(&messages[i]))
                .ok_or(StoreError::Db(sqlx::Error::RowNotFound))?;
            out[i] = Some(InsertOutcome {
                seq: to_u64(*seq),
                duplicate: true,
            });
        }
    }
    let out = out
        .into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Corrupt("message outcome left unresolved".into())))
        .collect::<Result<Vec<_>, _>>()?;

    // 4. One delivery row per (new message, recipient).
    let mut d_seqs = Vec::new();
    let mut d_meshes = Vec::new();
    let mut d_rcpts = Vec::new();
    let mut d_times = Vec::new();
    for (m, o) in messages.iter().zip(&out) {
        // Fan-out messages are stored once: no rows per recipient.
        if o.duplicate || m.at_len.is_some() {
            continue;
        }
        for r in &m.recipients {
            d_seqs.push(to_i64(o.seq));
            d_meshes.push(&m.mesh.0[..]);
            d_rcpts.push(key_bytes(r));
            d_times.push(to_i64(m.created_at_ms));
        }
    }
    if !d_seqs.is_empty() {
        sqlx::query(
            "INSERT INTO deliveries (seq, mesh_id, recipient, state, updated_at_ms) \
             SELECT seq, mesh_id, recipient, 0, updated_at_ms \
             FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::bigint[]) \
             AS t(seq, mesh_id, recipient, updated_at_ms) \
             ON CONFLICT DO NOTHING",
        )
        .bind(d_seqs)
        .bind(d_meshes)
        .bind(d_rcpts)
        .bind(d_times)
        .execute(&mut **tx)
        .await?;
    }
    Ok(out)
}

/// Applies all acks in one statement. A delivery row may match several
/// acks (delivered then read, or the member's and a session's); Postgres
/// would apply an arbitrary one of them, so each row takes the highest
/// state, from the earliest ack with that state: what applying the acks
/// one by one, in order, gives.
async fn apply_acks(tx: &mut sqlx::PgTransaction<'_>, acks: &[AckOp]) -> Result<(), StoreError> {
    let mut a_seqs = Vec::new();
    let mut a_meshes = Vec::new();
    let mut a_members = Vec::new();
    let mut a_sessions = Vec::new();
    let mut a_states = Vec::new();
    let mut a_times = Vec::new();
    for a in acks {
        for seq in &a.seqs {
            a_seqs.push(to_i64(*seq));
            a_meshes.push(&a.mesh.0[..]);
            a_members.push(key_bytes(&a.member));
            a_sessions.push(key_bytes(&a.session));
            a_states.push(small(state_rank(a.state)));
            a_times.push(to_i64(a.at_ms));
        }
    }
    if a_seqs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE deliveries d SET state = u.state, updated_at_ms = u.at \
         FROM (SELECT DISTINCT ON (d2.seq, d2.recipient) d2.seq, d2.recipient, a.state, a.at \
               FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[], \
                 $5::smallint[], $6::bigint[]) WITH ORDINALITY \
                 AS a(seq, mesh, member, session, state, at, ord) \
               JOIN deliveries d2 ON d2.seq = a.seq AND d2.mesh_id = a.mesh \
                 AND d2.recipient IN (a.member, a.session) \
               ORDER BY d2.seq, d2.recipient, a.state DESC, a.ord) u \
         WHERE d.seq = u.seq AND d.recipient = u.recipient AND d.state < u.state",
    )
    // Not prepared: a prepared statement gets a generic plan after five
    // runs, chosen while `deliveries` was small, and for this statement that
    // plan scans the whole table (17.8 ms instead of 0.1 ms at 60 k rows,
    // measured). Unprepared, it is planned with its real arrays each time.
    .persistent(false)
    .bind(&a_seqs)
    .bind(&a_meshes)
    .bind(&a_members)
    .bind(a_sessions)
    .bind(&a_states)
    .bind(&a_times)
    .execute(&mut **tx)
    .await?;
    // The fan-out messages among the acked seqs, to check each receipt
    // against the acking member's targets (an ack of a private topic's
    // seqs by a non-member, or of made-up seqs, writes nothing).
    let mut fanout: HashMap<i64, (String, u64)> = HashMap::new();
    for r in sqlx::query(
        "SELECT seq, target, at_len FROM messages WHERE seq = ANY($1) AND at_len IS NOT NULL",
    )
    .bind(&a_seqs)
    .fetch_all(&mut **tx)
    .await?
    {
        fanout.insert(r.try_get(0)?, (r.try_get(1)?, to_u64(r.try_get(2)?)));
    }
    let mut r_seqs = Vec::new();
    let mut r_meshes = Vec::new();
    let mut r_members = Vec::new();
    let mut r_states = Vec::new();
    let mut r_times = Vec::new();
    for a in acks {
        for seq in &a.seqs {
            let seq = to_i64(*seq);
            if fanout
                .get(&seq)
                .is_some_and(|(target, at_len)| a.may_receipt(target, *at_len))
            {
                r_seqs.push(seq);
                r_meshes.push(&a.mesh.0[..]);
                r_members.push(key_bytes(&a.member));
                r_states.push(small(state_rank(a.state)));
                r_times.push(to_i64(a.at_ms));
            }
        }
    }
    if r_seqs.is_empty() {
        return Ok(());
    }
    // The same acks, for fan-out messages: one receipt per (message,
    // member), the highest state wins; rows are taken in (seq, member)
    // order so two replicas cannot deadlock on them.
    sqlx::query(
        "INSERT INTO fanout_receipts (mesh_id, member, seq, state, updated_at_ms) \
         SELECT DISTINCT ON (m.seq, a.member) m.mesh_id, a.member, m.seq, a.state, a.at \
         FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::smallint[], $5::bigint[]) \
           WITH ORDINALITY AS a(seq, mesh, member, state, at, ord) \
         JOIN messages m ON m.seq = a.seq AND m.mesh_id = a.mesh AND m.at_len IS NOT NULL \
         ORDER BY m.seq, a.member, a.state DESC, a.ord \
         ON CONFLICT (mesh_id, member, seq) DO UPDATE \
         SET state = EXCLUDED.state, updated_at_ms = EXCLUDED.updated_at_ms \
         WHERE fanout_receipts.state < EXCLUDED.state",
    )
    .persistent(false)
    .bind(r_seqs)
    .bind(r_meshes)
    .bind(r_members)
    .bind(r_states)
    .bind(r_times)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A select expression rendering one column as text the way SQLite's
/// `quote()` does, so both backends dump alike: `NULL`, numbers as digits,
/// blobs as `X'…'` (uppercase hex), booleans as 1/0, anything else as a
/// single-quoted string literal.
fn render_column(name: &str, data_type: &str) -> String {
    let c = quote_ident(name);
    match data_type {
        "bytea" => format!("COALESCE('X''' || upper(encode({c}, 'hex')) || '''', 'NULL')"),
        "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision" => {
            format!("COALESCE({c}::text, 'NULL')")
        }
        "boolean" => format!("CASE WHEN {c} IS NULL THEN 'NULL' WHEN {c} THEN '1' ELSE '0' END"),
        _ => format!("COALESCE('''' || replace({c}::text, '''', '''''') || '''', 'NULL')"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use claudemesh_crypto::SigningKey;
    use claudemesh_crypto::log::LogBuilder;

    use super::*;
    use crate::testing::fresh_postgres_url;

    #[tokio::test]
    async fn migrations_wait_for_the_lock_and_time_out() {
        let db = fresh_postgres_url().await.expect("Postgres for tests");
        // Another "broker" holds the migration lock.
        let mut holder = PgConnection::connect(db.url()).await.unwrap();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .fetch_one(&mut holder)
            .await
            .unwrap();
        assert!(got);
        let started = Instant::now();
        let err = PostgresStore::open(db.url(), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::LockTimeout(t) if t == Duration::from_millis(500)),
            "{err}"
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(5));
        // Nothing was migrated meanwhile.
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        assert_eq!(tables, 0);

        // Once released, a waiting broker gets it.
        let url = db.url().to_owned();
        let waiter =
            tokio::spawn(async move { PostgresStore::open(&url, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished());
        let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .fetch_one(&mut holder)
            .await
            .unwrap();
        let store = waiter.await.unwrap().unwrap();
        store.ready().await.unwrap();
        // The lock was released after migrating.
        let again: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .fetch_one(&mut holder)
            .await
            .unwrap();
        assert!(again);
        holder.close().await.unwrap();
        store.pool().close().await;
        db.drop_database().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn brokers_starting_together_migrate_once() {
        let db = fresh_postgres_url().await.expect("Postgres for tests");
        let mut starts = Vec::new();
        for _ in 0..6 {
            let url = db.url().to_owned();
            starts.push(tokio::spawn(async move {
                PostgresStore::open(&url, Duration::from_secs(30)).await
            }));
        }
        let mut stores = Vec::new();
        for s in starts {
            stores.push(s.await.unwrap().unwrap());
        }
        for s in &stores {
            s.ready().await.unwrap();
        }
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(stores[0].pool())
            .await
            .unwrap();
        let known = i64::try_from(migrator().iter().count()).unwrap();
        assert_eq!(applied, known, "each migration applied exactly once");
        // Reopening an up-to-date database is fine too.
        let again = PostgresStore::open(db.url(), Duration::from_secs(5))
            .await
            .unwrap();
        again.ready().await.unwrap();
        again.pool().close().await;
        for s in stores {
            s.pool().close().await;
        }
        db.drop_database().await;
    }

    #[tokio::test]
    async fn a_bad_url_is_an_error_not_a_panic() {
        let err = PostgresStore::open("postgres://nobody@127.0.0.1:1/x", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Db(_)), "{err}");
        let Err(err) = crate::store::open("mysql://x", Duration::from_secs(1)).await else {
            panic!("a mysql URL opened");
        };
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_with_shared_duplicates_agree() {
        // Two writers (as two replicas) store overlapping batches at once:
        // every message ends up stored once, and both agree on its seq.
        let db = fresh_postgres_url().await.expect("Postgres for tests");
        let store = Arc::new(
            PostgresStore::open(db.url(), Duration::from_secs(30))
                .await
                .unwrap(),
        );
        let owner = SigningKey::generate();
        let builder = LogBuilder::new(&owner, 1);
        let mesh = builder.entries()[0].hash();
        store
            .create_mesh(&builder.entries()[0], mesh, 1)
            .await
            .unwrap();
        let sender = SigningKey::generate().public();
        let rcpt = SigningKey::generate().public();
        let batch: Vec<NewMessage> = (0..500)
            .map(|i| NewMessage {
                mesh,
                sender_member: sender,
                id: MessageId::random(),
                target: format!("member:{}", rcpt.to_hex()),
                priority: Priority::Next,
                envelope_json: format!("{{\"n\":{i}}}"),
                recipients: vec![rcpt],
                at_len: None,
                created_at_ms: 1,
                expires_at_ms: u64::MAX,
            })
            .collect();
        let mut reversed = batch.clone();
        reversed.reverse();
        let (a, b) = (store.clone(), store.clone());
        let (batch_a, batch_b) = (batch.clone(), reversed);
        let ta = tokio::spawn(async move { a.write_batch(&batch_a, &[]).await });
        let tb = tokio::spawn(async move { b.write_batch(&batch_b, &[]).await });
        let out_a = ta.await.unwrap().unwrap();
        let mut out_b = tb.await.unwrap().unwrap();
        out_b.reverse();
        for (x, y) in out_a.iter().zip(&out_b) {
            assert_eq!(x.seq, y.seq);
            assert!(x.duplicate != y.duplicate);
        }
        let pending = store
            .pending(&mesh, &[rcpt], 0, Priority::Low, 1000.into())
            .await
            .unwrap();
        assert_eq!(pending.len(), 500);
        store.pool().close().await;
        db.drop_database().await;
    }

    #[tokio::test]
    async fn pending_takes_any_number_of_recipients_once_each() {
        // Beyond the shared conformance tests: SQLite looks at the first two
        // recipient keys only and lists a message addressed to two of them
        // twice; here every key counts and each message comes once.
        let db = fresh_postgres_url().await.expect("Postgres for tests");
        let store = PostgresStore::open(db.url(), Duration::from_secs(30))
            .await
            .unwrap();
        let builder = LogBuilder::new(&SigningKey::generate(), 1);
        let mesh = builder.entries()[0].hash();
        store
            .create_mesh(&builder.entries()[0], mesh, 1)
            .await
            .unwrap();
        let keys: Vec<PublicKey> = (0..3).map(|_| SigningKey::generate().public()).collect();
        let message = |recipients: Vec<PublicKey>| NewMessage {
            mesh,
            sender_member: keys[0],
            id: MessageId::random(),
            target: "all".into(),
            priority: Priority::Low,
            envelope_json: "{}".into(),
            recipients,
            at_len: None,
            created_at_ms: 1,
            expires_at_ms: 10,
        };
        let out = store
            .write_batch(
                &[
                    message(vec![keys[0], keys[1]]),
                    message(vec![keys[2]]),
                    message(vec![keys[1], keys[1]]),
                ],
                &[],
            )
            .await
            .unwrap();
        let seqs: Vec<u64> = store
            .pending(&mesh, &keys, 0, Priority::Low, 10.into())
            .await
            .unwrap()
            .iter()
            .map(|p| p.seq)
            .collect();
        assert_eq!(seqs, out.iter().map(|o| o.seq).collect::<Vec<_>>());
        store.pool().close().await;
        db.drop_database().await;
    }

    /// Not a benchmark (see crates/bench), a guard against accidentally
    /// going back to per-message statements: 20 batches of 1000 messages
    /// with two recipients each, plus acks, and the rate printed.
    #[tokio::test]
    async fn write_batch_throughput() {
        let db = fresh_postgres_url().await.expect("Postgres for tests");
        let store = PostgresStore::open(db.url(), Duration::from_secs(30))
            .await
            .unwrap();
        let owner = SigningKey::generate();
        let builder = LogBuilder::new(&owner, 1);
        let mesh = builder.entries()[0].hash();
        store
            .create_mesh(&builder.entries()[0], mesh, 1)
            .await
            .unwrap();
        let sender = SigningKey::generate().public();
        let (member, session) = (
            SigningKey::generate().public(),
            SigningKey::generate().public(),
        );
        let envelope = format!("{{\"ciphertext\":\"{}\"}}", "A".repeat(400));
        let mut total = 0usize;
        let mut last_seqs: Vec<u64> = Vec::new();
        let started = Instant::now();
        for _ in 0..20 {
            let batch: Vec<NewMessage> = (0..1000)
                .map(|_| NewMessage {
                    mesh,
                    sender_member: sender,
                    id: MessageId::random(),
                    target: format!("member:{}", member.to_hex()),
                    priority: Priority::Next,
                    envelope_json: envelope.clone(),
                    recipients: vec![member, session],
                    at_len: None,
                    created_at_ms: 1,
                    expires_at_ms: u64::MAX,
                })
                .collect();
            let acks = vec![AckOp {
                mesh,
                member,
                session,
                seqs: last_seqs.clone(),
                state: claudemesh_proto::frames::DeliveryState::Delivered,
                at_ms: 2,
                fanout_targets: Vec::new(),
            }];
            let out = store.write_batch(&batch, &acks).await.unwrap();
            total += out.len();
            last_seqs = out.iter().map(|o| o.seq).collect();
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        println!("postgres write_batch: {total} messages at {rate:.0}/s");
        let pending = store
            .pending(&mesh, &[member, session], 0, Priority::Low, 5000.into())
            .await
            .unwrap();
        assert_eq!(pending.len(), 1000);
        // Generous floor: unoptimized test build on a small shared machine.
        assert!(rate > 2_000.0, "{rate:.0} messages/s");
        store.pool().close().await;
        db.drop_database().await;
    }
}
