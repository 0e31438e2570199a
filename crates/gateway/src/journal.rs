//! The event journal behind `GET /api/v1/events`: each thing a script may
//! want pushed (a message stored, a sent message's delivery changing, a
//! peer's presence, the membership log growing, the broker link going up
//! or down, an envelope refused) is written once to `gateway_events` in
//! the home's `state.db`, numbered; the number is the SSE event id. A
//! stream reads rows after the id it last sent, so one that reconnects
//! with `Last-Event-ID` gets what it missed, in order, once, even across
//! a restart of the gateway. A message event names its inbox row instead
//! of copying the body (the plaintext stays in one place, the inbox).
//! Rows older than [`KEEP_MS`] are dropped.

use claudemesh_crypto::MeshId;
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::watch;

/// How long events are kept for a client to resume.
pub const KEEP_MS: u64 = 7 * 24 * 3600 * 1000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A verified message was stored in the inbox.
    Message,
    /// The delivery state of a message sent through the gateway changed.
    Status,
    /// A peer session's presence changed.
    Presence,
    /// The membership log grew (members, topics, groups, roles, keys).
    Membership,
    /// The gateway's link to the broker went up or down.
    Connection,
    /// An envelope failed verification and was not stored.
    Rejected,
    /// Tasks, shared state, leases or team memory changed (`kinds`): a
    /// hint to read them again, with nothing of their contents.
    Coordination,
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Status => "status",
            EventKind::Presence => "presence",
            EventKind::Membership => "membership",
            EventKind::Connection => "connection",
            EventKind::Rejected => "rejected",
            EventKind::Coordination => "coordination",
        }
    }

    /// Every kind, in the order the docs list them.
    pub const ALL: [EventKind; 7] = [
        EventKind::Message,
        EventKind::Status,
        EventKind::Presence,
        EventKind::Membership,
        EventKind::Connection,
        EventKind::Rejected,
        EventKind::Coordination,
    ];

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One journal row.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its number (the SSE id).
    pub id: i64,
    /// What happened.
    pub kind: EventKind,
    /// The topic a message or status is about, for keys scoped to topics.
    pub topic: Option<String>,
    /// The event's data (for a message: `{"inbox_id": …}`).
    pub data: serde_json::Value,
    /// When it was written, unix ms.
    pub created_at: u64,
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database failed.
    #[error("the gateway's event journal failed: {0}")]
    Db(#[from] sqlx::Error),
}

/// The journal of one home.
#[derive(Debug, Clone)]
pub struct Journal {
    pool: SqlitePool,
    latest: watch::Sender<i64>,
}

impl Journal {
    /// The journal in the home's local store (`LocalStore::pool`).
    pub async fn open(pool: SqlitePool) -> Result<Self, JournalError> {
        let latest: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM gateway_events")
            .fetch_one(&pool)
            .await?
            .try_get(0)?;
        Ok(Journal {
            pool,
            latest: watch::Sender::new(latest),
        })
    }

    /// Writes an event; returns its number.
    pub async fn record(
        &self,
        mesh: &MeshId,
        kind: EventKind,
        topic: Option<&str>,
        data: &serde_json::Value,
        now_ms: u64,
    ) -> Result<i64, JournalError> {
        let id: i64 = sqlx::query(
            "INSERT INTO gateway_events (mesh_id, kind, topic, data, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(mesh.to_hex())
        .bind(kind.as_str())
        .bind(topic)
        .bind(data.to_string())
        .bind(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        self.latest.send_modify(|l| *l = (*l).max(id));
        Ok(id)
    }

    /// The number of the newest event.
    pub fn latest(&self) -> i64 {
        *self.latest.borrow()
    }

    /// Told the newest number whenever an event is written.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest.subscribe()
    }

    /// The events of `mesh` after number `after`, oldest first, at most
    /// `limit`.
    pub async fn after(
        &self,
        mesh: &MeshId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, JournalError> {
        let rows = sqlx::query(
            "SELECT id, kind, topic, data, created_at FROM gateway_events \
             WHERE mesh_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(mesh.to_hex())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get(1)?;
            let data: String = r.try_get(3)?;
            // A row this version cannot read (written by a newer one) is
            // skipped rather than ending the stream.
            let (Some(kind), Ok(data)) = (EventKind::parse(&kind), serde_json::from_str(&data))
            else {
                continue;
            };
            out.push(StoredEvent {
                id: r.try_get(0)?,
                kind,
                topic: r.try_get(2)?,
                data,
                created_at: u64::try_from(r.try_get::<i64, _>(4)?).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Where `mesh`'s inbox (in the same `state.db`) ends now: its newest
    /// row's id, 0 when empty. A session stores the broker's backlog while
    /// it connects, before its events can be heard; the rows after this
    /// mark, taken before connecting, are those.
    pub async fn inbox_end(&self, mesh: &MeshId) -> Result<i64, JournalError> {
        Ok(
            sqlx::query("SELECT COALESCE(MAX(id), 0) FROM inbox WHERE mesh_id = ?")
                .bind(mesh.to_hex())
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// Drops events written before `before_ms`; returns how many.
    pub async fn trim(&self, before_ms: u64) -> Result<u64, JournalError> {
        let done = sqlx::query("DELETE FROM gateway_events WHERE created_at < ?")
            .bind(i64::try_from(before_ms).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_client::local::LocalStore;
    use claudemesh_crypto::Hash32;

    #[tokio::test]
    async fn numbered_once_read_after_a_cursor_per_mesh_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let journal = Journal::open(local.pool().clone()).await.unwrap();
        let (a, b) = (MeshId(Hash32([1; 32])), MeshId(Hash32([2; 32])));
        let mut seen = journal.subscribe();
        let one = journal
            .record(
                &a,
                EventKind::Message,
                Some("deploys"),
                &serde_json::json!({"inbox_id": 7}),
                10,
            )
            .await
            .unwrap();
        let _other = journal
            .record(&b, EventKind::Presence, None, &serde_json::json!({}), 20)
            .await
            .unwrap();
        let two = journal
            .record(
                &a,
                EventKind::Membership,
                None,
                &serde_json::json!({"log_len": 3}),
                30,
            )
            .await
            .unwrap();
        assert!(seen.has_changed().unwrap());
        assert_eq!(*seen.borrow_and_update(), two);
        let all = journal.after(&a, 0, 10).await.unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [one, two]);
        assert_eq!(all[0].topic.as_deref(), Some("deploys"));
        assert_eq!(all[0].data["inbox_id"], 7);
        let rest = journal.after(&a, one, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].kind, EventKind::Membership);
        // Reopened, the numbering goes on from the newest row.
        let again = Journal::open(local.pool().clone()).await.unwrap();
        assert_eq!(again.latest(), two);
        assert_eq!(journal.trim(25).await.unwrap(), 2);
        assert_eq!(journal.after(&a, 0, 10).await.unwrap().len(), 1);
    }
}
