//! The embedded SQLite store: the default, for one broker on one machine.
//! WAL journal with `synchronous = FULL`, so a commit the broker has
//! acknowledged survives a crash or power loss; the group-commit writer makes
//! that affordable by putting many messages in one transaction.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::LogEntry;
use claudemesh_crypto::{Hash32, PublicKey};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, SqlStr};

use super::sql;
use super::{
    AckOp, AppendExtras, AppendOutcome, FanoutFacts, FanoutRow, InsertOutcome, MemberState,
    MessageStatus, NewMessage, PageLimit, PendingMessage, RetentionOutcome, SessionRecord, Store,
    StoreError, TableDump, entry_from_json, entry_to_json, fanout_weight, first_of, key_from_bytes,
    priority_from_rank, priority_rank, state_from_rank, state_rank, status_str, to_i64, to_u64,
};

/// The SQLite migrations, embedded in the binary.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../../../../migrations/sqlite/0001_init.sql")),
            false,
        ),
        Migration::new(
            2,
            "fanout".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../migrations/sqlite/0002_fanout.sql"
            )),
            false,
        ),
        Migration::new(
            3,
            "grants".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../migrations/sqlite/0003_grants.sql"
            )),
            false,
        ),
        Migration::new(
            4,
            "replicas".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../migrations/sqlite/0004_replicas.sql"
            )),
            false,
        ),
    ])
}

/// Rows per multi-row statement (well under SQLite's 32766 variables).
const ROWS_PER_STATEMENT: usize = 256;

/// `(?, ?, …), (?, ?, …)`: `rows` groups of `cols` placeholders.
fn placeholders(rows: usize, cols: usize) -> String {
    let group = format!("({})", vec!["?"; cols].join(", "));
    placeholders_with(rows, &group)
}

/// `rows` copies of `group`, comma-separated.
fn placeholders_with(rows: usize, group: &str) -> String {
    vec![group; rows].join(", ")
}

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

fn key_bytes(k: &PublicKey) -> &[u8] {
    k.as_bytes()
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
                super::hash_from_bytes(r.try_get::<&[u8], _>(0)?)?,
                r.try_get::<Vec<u8>, _>(1)?,
            ))),
        }
    }

    async fn write_batch(
        &self,
        messages: &[NewMessage],
        acks: &[AckOp],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        // Multi-row statements: each statement is a round trip to sqlx's
        // SQLite worker thread, so one per row made a batch cost ~120 µs a
        // message. Placeholders only; every value is bound.
        let mut out: Vec<Option<InsertOutcome>> = vec![None; messages.len()];
        let mut tx = self.write_tx().await?;
        let mut deliveries: Vec<(i64, &NewMessage)> = Vec::new();
        let mut duplicates = Vec::new();
        for (chunk_no, chunk) in messages.chunks(ROWS_PER_STATEMENT).enumerate() {
            let sql = format!(
                "INSERT INTO messages (mesh_id, sender_member, msg_id, target, priority, envelope, \
                 size, created_at_ms, expires_at_ms, at_len) VALUES {} \
                 ON CONFLICT (mesh_id, sender_member, msg_id) DO NOTHING \
                 RETURNING seq, mesh_id, sender_member, msg_id",
                placeholders(chunk.len(), 10)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in chunk {
                q = q
                    .bind(&m.mesh.0[..])
                    .bind(key_bytes(&m.sender_member))
                    .bind(&m.id.0[..])
                    .bind(&m.target)
                    .bind(priority_rank(m.priority))
                    .bind(&m.envelope_json)
                    .bind(i64::try_from(m.envelope_json.len()).unwrap_or(i64::MAX))
                    .bind(to_i64(m.created_at_ms))
                    .bind(to_i64(m.expires_at_ms))
                    .bind(m.at_len.map(to_i64));
            }
            let mut inserted: HashMap<(Vec<u8>, Vec<u8>, Vec<u8>), i64> = HashMap::new();
            for r in q.fetch_all(&mut *tx).await? {
                inserted.insert((r.try_get(1)?, r.try_get(2)?, r.try_get(3)?), r.try_get(0)?);
            }
            for (i, m) in chunk.iter().enumerate() {
                let index = chunk_no * ROWS_PER_STATEMENT + i;
                let key = (
                    m.mesh.0.to_vec(),
                    m.sender_member.as_bytes().to_vec(),
                    m.id.0.to_vec(),
                );
                // The first occurrence of a key in the batch is the stored
                // one; a later one (or one stored before) is a duplicate.
                match inserted.remove(&key) {
                    Some(seq) => {
                        out[index] = Some(InsertOutcome {
                            seq: to_u64(seq),
                            duplicate: false,
                        });
                        // Fan-out messages are stored once: no rows per recipient.
                        if m.at_len.is_none() {
                            deliveries.push((seq, m));
                        }
                    }
                    None => duplicates.push(index),
                }
            }
        }
        for index in duplicates {
            let m = &messages[index];
            let seq: i64 = sqlx::query_scalar(
                "SELECT seq FROM messages WHERE mesh_id = ? AND sender_member = ? AND msg_id = ?",
            )
            .bind(&m.mesh.0[..])
            .bind(key_bytes(&m.sender_member))
            .bind(&m.id.0[..])
            .fetch_one(&mut *tx)
            .await?;
            out[index] = Some(InsertOutcome {
                seq: to_u64(seq),
                duplicate: true,
            });
        }
        let rows: Vec<(i64, &NewMessage, &PublicKey)> = deliveries
            .iter()
            .flat_map(|(seq, m)| m.recipients.iter().map(move |r| (*seq, *m, r)))
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO deliveries (seq, mesh_id, recipient, state, updated_at_ms) VALUES {} \
                 ON CONFLICT DO NOTHING",
                placeholders_with(chunk.len(), "(?, ?, ?, 0, ?)")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (seq, m, rcpt) in chunk {
                q = q
                    .bind(*seq)
                    .bind(&m.mesh.0[..])
                    .bind(key_bytes(rcpt))
                    .bind(to_i64(m.created_at_ms));
            }
            q.execute(&mut *tx).await?;
        }
        // Which acked seqs are direct messages (with delivery rows): a
        // fan-out wave is hundreds of acks of fan-out messages only, and an
        // UPDATE per ack that finds no row was most of its cost.
        let mut all_seqs: Vec<i64> = acks
            .iter()
            .flat_map(|a| a.seqs.iter().map(|s| to_i64(*s)))
            .collect();
        all_seqs.sort_unstable();
        all_seqs.dedup();
        let mut direct: std::collections::HashSet<u64> = std::collections::HashSet::new();
        // Fan-out seqs: (target, at_len), to check each receipt against the
        // acking member's targets.
        let mut fanout: HashMap<u64, (String, u64)> = HashMap::new();
        for chunk in all_seqs.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT seq, target, at_len FROM messages WHERE seq IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for seq in chunk {
                q = q.bind(*seq);
            }
            for r in q.fetch_all(&mut *tx).await? {
                let seq = to_u64(r.try_get(0)?);
                match r.try_get::<Option<i64>, _>(2)? {
                    None => {
                        direct.insert(seq);
                    }
                    Some(at_len) => {
                        fanout.insert(seq, (r.try_get(1)?, to_u64(at_len)));
                    }
                }
            }
        }
        for a in acks {
            let state = state_rank(a.state);
            let seqs: Vec<u64> = a
                .seqs
                .iter()
                .copied()
                .filter(|s| direct.contains(s))
                .collect();
            for seqs in seqs.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "UPDATE deliveries SET state = ?, updated_at_ms = ? \
                     WHERE mesh_id = ? AND recipient IN (?, ?) AND state < ? AND seq IN ({})",
                    vec!["?"; seqs.len()].join(", ")
                );
                let mut q = sqlx::query(AssertSqlSafe(sql))
                    .bind(state)
                    .bind(to_i64(a.at_ms))
                    .bind(&a.mesh.0[..])
                    .bind(key_bytes(&a.member))
                    .bind(key_bytes(&a.session))
                    .bind(state);
                for seq in seqs {
                    q = q.bind(to_i64(*seq));
                }
                q.execute(&mut *tx).await?;
            }
        }
        // The other seqs (fan-out messages, or unknown ones the JOIN drops): a
        // receipt each, all acks of the batch in as few statements as the
        // variable limit allows (a fan-out wave is a thousand one-seq acks;
        // a batch of direct acks writes none). Rows are applied in order and
        // a receipt only goes up, so the highest state wins whatever the order.
        let receipts: Vec<(&AckOp, u64)> = acks
            .iter()
            .flat_map(|a| a.seqs.iter().map(move |s| (a, *s)))
            .filter(|(a, s)| {
                fanout
                    .get(s)
                    .is_some_and(|(target, at_len)| a.may_receipt(target, *at_len))
            })
            .collect();
        for chunk in receipts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH v (mesh_id, member, seq, state, at) AS (VALUES {}) \
                 INSERT INTO fanout_receipts (mesh_id, member, seq, state, updated_at_ms) \
                 SELECT v.mesh_id, v.member, v.seq, v.state, v.at FROM v \
                 JOIN messages m ON m.seq = v.seq AND m.mesh_id = v.mesh_id \
                 WHERE m.at_len IS NOT NULL \
                 ON CONFLICT (mesh_id, member, seq) DO UPDATE \
                 SET state = excluded.state, updated_at_ms = excluded.updated_at_ms \
                 WHERE fanout_receipts.state < excluded.state",
                placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (a, seq) in chunk {
                q = q
                    .bind(&a.mesh.0[..])
                    .bind(key_bytes(&a.member))
                    .bind(to_i64(*seq))
                    .bind(state_rank(a.state))
                    .bind(to_i64(a.at_ms));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        out.into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Corrupt("a message got no outcome".into())))
            .collect()
    }

    async fn pending(
        &self,
        mesh: &Hash32,
        recipients: &[PublicKey],
        after_seq: u64,
        max_priority: Priority,
        limit: PageLimit,
    ) -> Result<Vec<PendingMessage>, StoreError> {
        let Some(first) = recipients.first() else {
            return Ok(Vec::new());
        };
        let second = recipients.get(1).unwrap_or(first);
        // The page's seqs and sizes first, cut by weight, then the
        // envelopes of only those (none is read that is not returned).
        let rows = sqlx::query(
            "WITH page AS (SELECT d.seq, m.size FROM deliveries d \
               JOIN messages m ON m.seq = d.seq \
               WHERE d.mesh_id = ? AND d.recipient IN (?, ?) AND d.state = 0 AND d.seq > ? \
               AND m.priority <= ? AND m.envelope IS NOT NULL \
               ORDER BY d.seq LIMIT ?), \
             cut AS (SELECT seq FROM (SELECT seq, \
               SUM(size) OVER (ORDER BY seq) - size AS before FROM page) WHERE before < ?) \
             SELECT m.seq, m.envelope, m.created_at_ms FROM cut \
             JOIN messages m ON m.seq = cut.seq ORDER BY m.seq",
        )
        .bind(&mesh.0[..])
        .bind(key_bytes(first))
        .bind(key_bytes(second))
        .bind(to_i64(after_seq))
        .bind(priority_rank(max_priority))
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
            Some(r) => Some(FanoutFacts {
                target: r.try_get(0)?,
                at_len: to_u64(r.try_get(1)?),
                expired: r.try_get::<bool, _>(2)?,
            }),
            None => None,
        };
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
            let state: Option<i64> = r.try_get(2)?;
            if let (Some(recipient), Some(state)) = (recipient, state) {
                recipients.push((key_from_bytes(recipient)?, state_from_rank(state)?));
            }
        }
        Ok(Some(MessageStatus {
            seq: to_u64(seq),
            recipients,
            fanout,
        }))
    }

    async fn fanout_pages(
        &self,
        mesh: &Hash32,
        member: &PublicKey,
        targets: &[(String, u64)],
        after_seq: u64,
        limit: PageLimit,
    ) -> Result<Vec<FanoutRow>, StoreError> {
        let mut out = Vec::new();
        // Where a chunk's answer may have been cut: rows above it may be
        // missing from the merge.
        let mut bound = u64::MAX;
        // Two variables per target; the rest of the statement takes eight.
        for chunk in targets.chunks(ROWS_PER_STATEMENT) {
            // For each target its first rows (an index range scan each,
            // inside one statement); the first of all, cut by the weight of
            // the envelopes it returns (an acked row returns none); then the
            // envelopes of only those.
            let sql = format!(
                "WITH t(target, since) AS (VALUES {}), \
                 page AS (SELECT m.seq, m.size, r.seq IS NOT NULL AS acked \
                   FROM t JOIN messages m ON m.seq IN ( \
                     SELECT m2.seq FROM messages m2 \
                     WHERE m2.mesh_id = ? AND m2.target = t.target AND m2.at_len IS NOT NULL \
                     AND m2.at_len > t.since AND m2.sender_member <> ? AND m2.seq > ? \
                     AND m2.seq > COALESCE((SELECT c.seq FROM fanout_cursors c \
                       WHERE c.mesh_id = ? AND c.member = ? AND c.target = t.target), 0) \
                     ORDER BY m2.seq LIMIT ?) \
                   LEFT JOIN fanout_receipts r ON r.mesh_id = m.mesh_id AND r.member = ? \
                     AND r.seq = m.seq \
                   ORDER BY m.seq LIMIT ?), \
                 weighed AS (SELECT seq, acked, CASE WHEN acked THEN 0 ELSE size END AS w \
                   FROM page), \
                 cut AS (SELECT seq, acked FROM (SELECT seq, acked, \
                   SUM(w) OVER (ORDER BY seq) - w AS before FROM weighed) WHERE before < ?) \
                 SELECT m.seq, m.target, m.at_len, m.created_at_ms, cut.acked, \
                 CASE WHEN cut.acked THEN NULL ELSE m.envelope END, m.sender_member, m.priority \
                 FROM cut JOIN messages m ON m.seq = cut.seq ORDER BY m.seq",
                placeholders(chunk.len(), 2)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (target, since) in chunk {
                q = q.bind(target).bind(to_i64(*since));
            }
            let rows = q
                .bind(&mesh.0[..])
                .bind(key_bytes(member))
                .bind(to_i64(after_seq))
                .bind(&mesh.0[..])
                .bind(key_bytes(member))
                .bind(i64::from(limit.rows))
                .bind(key_bytes(member))
                .bind(i64::from(limit.rows))
                .bind(to_i64(limit.bytes))
                .fetch_all(&self.pool)
                .await?;
            let mut answer = Vec::with_capacity(rows.len());
            for r in rows {
                answer.push(FanoutRow {
                    seq: to_u64(r.try_get(0)?),
                    target: r.try_get(1)?,
                    at_len: to_u64(r.try_get(2)?),
                    queued_at_ms: to_u64(r.try_get(3)?),
                    acked: r.try_get(4)?,
                    envelope_json: r.try_get(5)?,
                    sender: key_from_bytes(r.try_get::<&[u8], _>(6)?)?,
                    priority: priority_from_rank(r.try_get::<i64, _>(7)?)?,
                });
            }
            if let Some(last) = answer.last()
                && limit.may_be_cut(answer.len(), fanout_weight(&answer))
            {
                bound = bound.min(last.seq);
            }
            out.extend(answer);
        }
        // Several chunks: what lies below every cut, in order, cut again.
        out.retain(|r| r.seq <= bound);
        out.sort_by_key(|r| r.seq);
        Ok(first_of(out, limit, |r| {
            r.envelope_json.as_ref().map_or(0, |e| e.len() as u64)
        }))
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
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(tables.len());
        for table in tables {
            // Table and column names come from SQLite's own catalog, never
            // from a peer; they are quoted as identifiers all the same.
            let ident = format!("\"{}\"", table.replace('"', "\"\""));
            let columns: Vec<String> = sqlx::query(AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{}') ORDER BY cid",
                table.replace('\'', "''")
            )))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
            if columns.is_empty() {
                continue;
            }
            let select = columns
                .iter()
                .map(|c| format!("quote(\"{}\")", c.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(", ");
            let rows = sqlx::query(AssertSqlSafe(format!("SELECT {select} FROM {ident}")))
                .fetch_all(&self.pool)
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
        Ok(out)
    }
}
