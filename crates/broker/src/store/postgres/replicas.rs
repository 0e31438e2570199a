//! The Postgres side of [`ReplicaStore`]: the `brokers` heartbeat table,
//! the `sessions_online` presence table, the wake-up channel (`NOTIFY` on a
//! connection of its own, never inside a message-insert transaction;
//! `LISTEN` on another), and the reads a replica makes when it is woken.
//!
//! Times that decide whether a broker is alive come from the database's
//! clock, so replicas whose clocks disagree still agree on who is dead.

use async_trait::async_trait;
use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::log::{LogEntry, PeerType};
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::frames::EncryptedBlob;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};

use crate::store::codec::{
    entry_from_json, key_from_bytes, mesh_from_bytes, priority_from_rank, status_from_str,
    status_str, to_i64, to_u64,
};
use crate::store::error::StoreError;
use crate::store::replicas::{
    DirectRow, FanoutMessage, OnlineSession, PresenceWrite, Reaped, ReplicaStore, WakeListener,
    WakeSender,
};

/// The notification channel replicas wake each other on.
pub const WAKE_CHANNEL: &str = "claudemesh_wake";

/// Unix milliseconds by the database's clock.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The replica side of a [`super::PostgresStore`]: its pool, and the
/// options to open the two dedicated connections (notify and listen).
#[derive(Debug, Clone)]
pub struct PgReplicaStore {
    pool: PgPool,
    opts: PgConnectOptions,
}

impl PgReplicaStore {
    pub(super) fn new(pool: PgPool, opts: PgConnectOptions) -> Self {
        PgReplicaStore { pool, opts }
    }
}

#[async_trait]
impl ReplicaStore for PgReplicaStore {
    /// Registers (or re-registers) a broker instance.
    async fn register(&self, broker: &str) -> Result<(), StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO brokers (broker_id, started_at_ms, heartbeat_at_ms) \
             VALUES ($1, {DB_NOW_MS}, {DB_NOW_MS}) ON CONFLICT (broker_id) DO UPDATE \
             SET heartbeat_at_ms = EXCLUDED.heartbeat_at_ms"
        )))
        .bind(broker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves the instance's heartbeat; false when its row was gone (another
    /// replica took it for dead and removed its sessions).
    async fn heartbeat(&self, broker: &str) -> Result<bool, StoreError> {
        let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE brokers SET heartbeat_at_ms = {DB_NOW_MS} WHERE broker_id = $1"
        )))
        .bind(broker)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(moved > 0)
    }

    /// Removes brokers whose heartbeat is older than `stale_ms` and, if
    /// any went (or `sweep` is set), every session row without a live
    /// broker.
    async fn reap(&self, stale_ms: u64, sweep: bool) -> Result<Reaped, StoreError> {
        let mut tx = self.pool.begin().await?;
        let brokers: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "DELETE FROM brokers WHERE heartbeat_at_ms < {DB_NOW_MS} - $1 RETURNING broker_id"
        )))
        .bind(to_i64(stale_ms))
        .fetch_all(&mut *tx)
        .await?;
        let rows = if sweep || !brokers.is_empty() {
            sqlx::query(
                "DELETE FROM sessions_online s WHERE NOT EXISTS \
                 (SELECT 1 FROM brokers b WHERE b.broker_id = s.broker_id) \
                 RETURNING s.mesh_id, s.member",
            )
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(Reaped {
            brokers,
            sessions: mesh_members(&rows)?,
        })
    }

    /// Other broker instances whose heartbeat is younger than `stale_ms`.
    async fn live_peers(&self, broker: &str, stale_ms: u64) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM brokers WHERE broker_id <> $1 \
             AND heartbeat_at_ms >= {DB_NOW_MS} - $2"
        )))
        .bind(broker)
        .bind(to_i64(stale_ms))
        .fetch_one(&self.pool)
        .await?;
        Ok(to_u64(n))
    }

    /// Removes an instance and its sessions (clean shutdown); returns whose
    /// sessions went.
    async fn leave(&self, broker: &str) -> Result<Vec<(MeshId, PublicKey)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "DELETE FROM sessions_online WHERE broker_id = $1 RETURNING mesh_id, member",
        )
        .bind(broker)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM brokers WHERE broker_id = $1")
            .bind(broker)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        mesh_members(&rows)
    }

    /// Applies this broker's presence changes in one transaction (at most
    /// one change per session key: the caller collapses them).
    async fn write_presence(
        &self,
        broker: &str,
        writes: &[PresenceWrite],
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut fresh = Columns::default();
        let mut changed = Columns::default();
        let (mut d_mesh, mut d_session, mut d_conn) = (Vec::new(), Vec::new(), Vec::new());
        for w in writes {
            match w {
                PresenceWrite::Up { row, fresh: true } => fresh.push(row),
                PresenceWrite::Up { row, fresh: false } => changed.push(row),
                PresenceWrite::Down(end) => {
                    d_mesh.push(end.mesh.as_bytes().to_vec());
                    d_session.push(end.session.as_bytes().to_vec());
                    d_conn.push(to_i64(end.conn_id));
                }
            }
        }
        let mut tx = self.pool.begin().await?;
        if !d_mesh.is_empty() {
            sqlx::query(
                "DELETE FROM sessions_online s \
                 USING UNNEST($1::bytea[], $2::bytea[], $3::bigint[]) AS d(mesh, session, conn) \
                 WHERE s.mesh_id = d.mesh AND s.session = d.session AND s.conn_id = d.conn \
                 AND s.broker_id = $4",
            )
            .bind(d_mesh)
            .bind(d_session)
            .bind(d_conn)
            .bind(broker)
            .execute(&mut *tx)
            .await?;
        }
        // A new connection takes the session key's row wherever it was; a
        // change touches only this broker's row of that connection, so a
        // late change from a replaced connection never overwrites the row
        // of the connection that replaced it.
        for (cols, guard) in [
            (fresh, ""),
            (
                changed,
                " WHERE sessions_online.broker_id = EXCLUDED.broker_id \
                  AND sessions_online.conn_id = EXCLUDED.conn_id",
            ),
        ] {
            if cols.mesh.is_empty() {
                continue;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO sessions_online (mesh_id, session, member, broker_id, conn_id, cert, \
                 status, peer_type, summary, connected_at_ms, updated_at_ms) \
                 SELECT mesh, session, member, $11, conn, cert, status, peer_type, summary, \
                 connected, updated FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[], \
                 $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], \
                 $10::bigint[]) AS t(mesh, session, member, conn, cert, status, \
                 peer_type, summary, connected, updated) \
                 ON CONFLICT (mesh_id, session) DO UPDATE SET member = EXCLUDED.member, \
                 broker_id = EXCLUDED.broker_id, conn_id = EXCLUDED.conn_id, cert = EXCLUDED.cert, \
                 status = EXCLUDED.status, peer_type = EXCLUDED.peer_type, \
                 summary = EXCLUDED.summary, connected_at_ms = EXCLUDED.connected_at_ms, \
                 updated_at_ms = EXCLUDED.updated_at_ms{guard}"
            )))
            .bind(cols.mesh)
            .bind(cols.session)
            .bind(cols.member)
            .bind(cols.conn)
            .bind(cols.cert)
            .bind(cols.status)
            .bind(cols.peer_type)
            .bind(cols.summary)
            .bind(cols.connected)
            .bind(cols.updated)
            .bind(broker)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sessions of `mesh` connected to other live instances than `broker`
    /// (heartbeat younger than `stale_ms`), of `members` only if given.
    async fn online_sessions(
        &self,
        mesh: &MeshId,
        members: Option<&[PublicKey]>,
        broker: &str,
        stale_ms: u64,
    ) -> Result<Vec<OnlineSession>, StoreError> {
        let only: Option<Vec<&[u8]>> =
            members.map(|m| m.iter().map(|k| &k.as_bytes()[..]).collect());
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.session, s.member, s.broker_id, s.conn_id, s.cert, s.status, s.peer_type, \
             s.summary, s.connected_at_ms, s.updated_at_ms \
             FROM sessions_online s JOIN brokers b ON b.broker_id = s.broker_id \
             WHERE s.mesh_id = $1 AND s.broker_id <> $2 \
             AND b.heartbeat_at_ms >= {DB_NOW_MS} - $3 \
             AND ($4::bytea[] IS NULL OR s.member = ANY($4::bytea[])) \
             ORDER BY s.session"
        )))
        .bind(&mesh.as_bytes()[..])
        .bind(broker)
        .bind(to_i64(stale_ms))
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let cert: SessionCert = serde_json::from_str(r.try_get::<&str, _>(4)?)
                .map_err(|e| StoreError::Corrupt(format!("stored session certificate: {e}")))?;
            let peer_type = r
                .try_get::<Option<&str>, _>(6)?
                .map(|p| {
                    p.parse::<PeerType>()
                        .map_err(|_| StoreError::Corrupt(format!("peer type {p:?}")))
                })
                .transpose()?;
            let summary = r
                .try_get::<Option<&str>, _>(7)?
                .map(|s| {
                    serde_json::from_str::<EncryptedBlob>(s)
                        .map_err(|e| StoreError::Corrupt(format!("summary: {e}")))
                })
                .transpose()?;
            out.push(OnlineSession {
                mesh: *mesh,
                session: key_from_bytes(r.try_get::<&[u8], _>(0)?)?,
                member: key_from_bytes(r.try_get::<&[u8], _>(1)?)?,
                broker: r.try_get(2)?,
                conn_id: to_u64(r.try_get(3)?),
                cert,
                status: status_from_str(r.try_get(5)?)?,
                peer_type,
                summary,
                connected_at_ms: to_u64(r.try_get(8)?),
                updated_at_ms: to_u64(r.try_get(9)?),
            });
        }
        Ok(out)
    }

    /// The membership log's entries from `from_seq` on, in order (unverified:
    /// the caller verifies each against its roster before adopting it).
    async fn log_from(&self, mesh: &MeshId, from_seq: u64) -> Result<Vec<LogEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT entry FROM log_entries WHERE mesh_id = $1 AND seq >= $2 ORDER BY seq",
        )
        .bind(&mesh.as_bytes()[..])
        .bind(to_i64(from_seq))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| entry_from_json(r.try_get::<&str, _>(0)?))
            .collect()
    }

    /// The stored grant sets of `members` (unverified).
    async fn grants_of(
        &self,
        mesh: &MeshId,
        members: &[PublicKey],
    ) -> Result<Vec<(PublicKey, String)>, StoreError> {
        let keys: Vec<&[u8]> = members.iter().map(|k| &k.as_bytes()[..]).collect();
        let rows =
            sqlx::query("SELECT member, doc FROM grants WHERE mesh_id = $1 AND member = ANY($2)")
                .bind(&mesh.as_bytes()[..])
                .bind(keys)
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push((key_from_bytes(r.try_get::<&[u8], _>(0)?)?, r.try_get(1)?));
        }
        Ok(out)
    }

    /// Direct messages among `seqs` still queued for one of `recipients`,
    /// by seq.
    async fn direct_rows(
        &self,
        mesh: &MeshId,
        seqs: &[u64],
        recipients: &[PublicKey],
    ) -> Result<Vec<DirectRow>, StoreError> {
        if seqs.is_empty() || recipients.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<i64> = seqs.iter().map(|s| to_i64(*s)).collect();
        let keys: Vec<&[u8]> = recipients.iter().map(|k| &k.as_bytes()[..]).collect();
        let rows = sqlx::query(
            "SELECT d.seq, d.recipient, m.priority, m.envelope, m.created_at_ms, m.deadline_ms \
             FROM deliveries d JOIN messages m ON m.seq = d.seq \
             WHERE d.seq = ANY($1::bigint[]) AND d.mesh_id = $2 AND d.recipient = ANY($3::bytea[]) \
             AND d.state = 0 AND m.envelope IS NOT NULL ORDER BY d.seq",
        )
        .bind(seqs)
        .bind(&mesh.as_bytes()[..])
        .bind(keys)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(DirectRow {
                seq: to_u64(r.try_get(0)?),
                recipient: key_from_bytes(r.try_get::<&[u8], _>(1)?)?,
                priority: priority_from_rank(i64::from(r.try_get::<i16, _>(2)?))?,
                envelope_json: r.try_get(3)?,
                queued_at_ms: to_u64(r.try_get(4)?),
                deadline_ms: r.try_get::<Option<i64>, _>(5)?.map(to_u64),
            });
        }
        Ok(out)
    }

    /// Fan-out messages of `mesh` among `seqs`, by seq.
    async fn fanout_rows(
        &self,
        mesh: &MeshId,
        seqs: &[u64],
    ) -> Result<Vec<FanoutMessage>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<i64> = seqs.iter().map(|s| to_i64(*s)).collect();
        let rows = sqlx::query(
            "SELECT seq, target, at_len, sender_member, priority, envelope, created_at_ms, tseq, \
             deadline_ms FROM messages WHERE seq = ANY($1::bigint[]) AND mesh_id = $2 \
             AND at_len IS NOT NULL AND envelope IS NOT NULL ORDER BY seq",
        )
        .bind(seqs)
        .bind(&mesh.as_bytes()[..])
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(FanoutMessage {
                seq: to_u64(r.try_get(0)?),
                target: r.try_get(1)?,
                at_len: to_u64(r.try_get(2)?),
                sender: key_from_bytes(r.try_get::<&[u8], _>(3)?)?,
                priority: priority_from_rank(i64::from(r.try_get::<i16, _>(4)?))?,
                envelope_json: r.try_get(5)?,
                queued_at_ms: to_u64(r.try_get(6)?),
                tseq: r.try_get::<Option<i64>, _>(7)?.map(to_u64),
                deadline_ms: r.try_get::<Option<i64>, _>(8)?.map(to_u64),
            });
        }
        Ok(out)
    }

    /// A listener on [`WAKE_CHANNEL`], on a connection of its own.
    async fn listen(&self) -> Result<Box<dyn WakeListener>, StoreError> {
        // A pool of one, so the listener can reconnect by itself; losing the
        // connection is reported (`try_recv` → `None`), not hidden.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(self.opts.clone())
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.eager_reconnect(false);
        listener.listen(WAKE_CHANNEL).await?;
        Ok(Box::new(PgWakeListener(listener)))
    }

    /// A connection for sending wake-ups.
    fn notifier(&self) -> Box<dyn WakeSender> {
        Box::new(PgWakeSender {
            opts: self.opts.clone(),
            conn: None,
        })
    }
}

/// `LISTEN` on [`WAKE_CHANNEL`].
#[derive(Debug)]
struct PgWakeListener(PgListener);

#[async_trait]
impl WakeListener for PgWakeListener {
    async fn try_recv(&mut self) -> Result<Option<String>, StoreError> {
        Ok(self.0.try_recv().await?.map(|n| n.payload().to_owned()))
    }
}

/// Sends wake-up notifications on a dedicated connection, outside any
/// message transaction. Its commits do not wait for the WAL flush
/// (`synchronous_commit = off`): a notification is a hint about rows that
/// are already durable, and a listener that misses one (a crash, a
/// reconnect) catches up from the tables.
#[derive(Debug)]
struct PgWakeSender {
    opts: PgConnectOptions,
    conn: Option<PgConnection>,
}

#[async_trait]
impl WakeSender for PgWakeSender {
    /// Sends each payload as one notification, all in one statement.
    async fn send(&mut self, payloads: &[String]) -> Result<(), StoreError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let mut c = PgConnection::connect_with(&self.opts).await?;
                sqlx::query("SET synchronous_commit = off")
                    .execute(&mut c)
                    .await?;
                self.conn.insert(c)
            }
        };
        let sent = sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
            .bind(WAKE_CHANNEL)
            .bind(payloads)
            .execute(&mut *conn)
            .await;
        if let Err(e) = sent {
            // Start over on a new connection next time.
            self.conn = None;
            return Err(e.into());
        }
        Ok(())
    }
}

/// Column arrays for an `UNNEST` upsert of session rows.
#[derive(Default)]
struct Columns {
    mesh: Vec<Vec<u8>>,
    session: Vec<Vec<u8>>,
    member: Vec<Vec<u8>>,
    conn: Vec<i64>,
    cert: Vec<String>,
    status: Vec<&'static str>,
    peer_type: Vec<Option<&'static str>>,
    summary: Vec<Option<String>>,
    connected: Vec<i64>,
    updated: Vec<i64>,
}

impl Columns {
    fn push(&mut self, r: &OnlineSession) {
        self.mesh.push(r.mesh.as_bytes().to_vec());
        self.session.push(r.session.as_bytes().to_vec());
        self.member.push(r.member.as_bytes().to_vec());
        self.conn.push(to_i64(r.conn_id));
        // Plain data: serialization cannot fail.
        self.cert
            .push(serde_json::to_string(&r.cert).unwrap_or_default());
        self.status.push(status_str(r.status));
        self.peer_type.push(r.peer_type.map(|p| p.as_str()));
        self.summary.push(
            r.summary
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default()),
        );
        self.connected.push(to_i64(r.connected_at_ms));
        self.updated.push(to_i64(r.updated_at_ms));
    }
}

fn mesh_members(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<(MeshId, PublicKey)>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok((
                mesh_from_bytes(r.try_get::<&[u8], _>(0)?)?,
                key_from_bytes(r.try_get::<&[u8], _>(1)?)?,
            ))
        })
        .collect()
}
