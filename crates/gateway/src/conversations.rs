//! Conversations: the direct messages between this member and one peer,
//! both ways, behind `GET /api/v1/conversations/{peer}/messages`. What the
//! peer sent is in this device's inbox already (plaintext, once verified
//! and opened: a direct target, `member:<this member>` or one of its
//! sessions, from the peer's member key). What this member sent is sealed
//! in the outbox, so the gateway remembers the plaintext of each direct
//! message it sends (`POST /api/v1/messages` to a member or a session) in
//! `gateway_sent`, in the home's `state.db` beside the inbox; a retried
//! send (the same id) is kept once. A page is read newest first, ordered
//! by the time each message was sent (its envelope's clock), then its id.

use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::{MeshId, PublicKey};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

/// A direct message the gateway sent, to remember.
#[derive(Debug, Clone, Copy)]
pub struct SentDirect<'a> {
    /// Its mesh.
    pub mesh: &'a MeshId,
    /// Its id.
    pub id: &'a MessageId,
    /// The member it went to.
    pub recipient: &'a PublicKey,
    /// The target as sent (`member:<hex>`, `session:<hex>`).
    pub target: &'a str,
    /// The text.
    pub body: &'a str,
    /// Its priority.
    pub priority: Priority,
    /// The message it answers.
    pub reply_to: Option<&'a MessageId>,
    /// When it was sent (its envelope's time), unix ms.
    pub sent_at: u64,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    /// The message id (hex).
    pub id: String,
    /// The sender's member key (hex).
    pub from: String,
    /// This member sent it.
    pub you: bool,
    /// The text (invalid UTF-8 replaced).
    pub body: String,
    /// `now`, `next` or `low`.
    pub priority: String,
    /// The message it answers (hex).
    pub reply_to: Option<String>,
    /// The sender's clock, unix ms.
    pub sent_at: u64,
    /// Shown on this device (a message this member sent always is).
    pub read: bool,
}

/// A page of a conversation, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPage {
    /// The messages.
    pub rows: Vec<ConversationRow>,
    /// Older messages remain.
    pub more: bool,
}

/// Why the conversations could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// The database failed.
    #[error("the gateway's conversation store failed: {0}")]
    Db(#[from] sqlx::Error),
}

/// Every message between this member and a peer in a mesh, as the
/// table `convo`: received ones from the inbox, sent ones from
/// `gateway_sent` (but those sent for later, until their time, and those
/// cancelled before it or failed at it: the outbox says which). Its parameters, in order: the mesh, the peer's key,
/// `member:<this member's key>`, this member's key, the mesh, the peer's
/// key.
macro_rules! convo {
    () => {
        "WITH convo AS (\
         SELECT msg_id, sender_member AS sender, 0 AS you, body, priority, reply_to, sent_at, \
                read_at IS NOT NULL AS is_read \
           FROM inbox WHERE mesh_id = ? AND sender_member = ? \
            AND (target = ? OR target LIKE 'session:%') \
         UNION ALL \
         SELECT g.msg_id, ? AS sender, 1 AS you, g.body, g.priority, g.reply_to, g.sent_at, \
                1 AS is_read \
           FROM gateway_sent g WHERE g.mesh_id = ? AND g.recipient = ? \
            AND NOT EXISTS (SELECT 1 FROM outbox o \
                 WHERE o.mesh_id = g.mesh_id AND o.msg_id = g.msg_id \
                   AND (o.state IN ('cancelled', 'failed') OR (o.state = 'scheduled' \
                        AND o.deliver_at_ms > (julianday('now') - 2440587.5) * 86400000.0)))) "
    };
}

/// Where one message (the next parameter: its id) is: its time and id.
const POSITION: &str = concat!(
    convo!(),
    "SELECT sent_at, msg_id FROM convo WHERE msg_id = ? LIMIT 1"
);

/// A page: the next parameters are the time to start before (or NULL,
/// twice), the id at that time to start before, and how many.
const PAGE: &str = concat!(
    convo!(),
    "SELECT msg_id, sender, you, body, priority, reply_to, sent_at, is_read FROM convo \
     WHERE (? IS NULL OR (sent_at, msg_id) < (?, ?)) \
     ORDER BY sent_at DESC, msg_id DESC LIMIT ?"
);

/// The conversations of one home.
#[derive(Debug, Clone)]
pub struct Conversations {
    pool: SqlitePool,
}

impl Conversations {
    /// The conversations in the home's local store (`LocalStore::pool`).
    pub fn new(pool: SqlitePool) -> Self {
        Conversations { pool }
    }

    /// Remembers a direct message sent (once per id).
    pub async fn remember(&self, m: &SentDirect<'_>) -> Result<(), ConversationError> {
        sqlx::query(
            "INSERT INTO gateway_sent \
             (mesh_id, msg_id, recipient, target, body, priority, reply_to, sent_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mesh_id, msg_id) DO NOTHING",
        )
        .bind(m.mesh.to_hex())
        .bind(m.id.to_hex())
        .bind(m.recipient.to_hex())
        .bind(m.target)
        .bind(m.body.as_bytes())
        .bind(m.priority.as_str())
        .bind(m.reply_to.map(MessageId::to_hex))
        .bind(i64::try_from(m.sent_at).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` messages between `me` and `peer` in `mesh`
    /// (older than the message `before`, when given): `None` when `before`
    /// is not in the conversation.
    pub async fn page(
        &self,
        mesh: &MeshId,
        me: &PublicKey,
        peer: &PublicKey,
        before: Option<&MessageId>,
        limit: u32,
    ) -> Result<Option<ConversationPage>, ConversationError> {
        let (mesh, me, peer) = (mesh.to_hex(), me.to_hex(), peer.to_hex());
        let me_target = format!("member:{me}");
        let bind = |sql: &'static str| {
            sqlx::query(sql)
                .bind(mesh.clone())
                .bind(peer.clone())
                .bind(me_target.clone())
                .bind(me.clone())
                .bind(mesh.clone())
                .bind(peer.clone())
        };
        let start = match before {
            None => None,
            Some(id) => {
                let row = bind(POSITION)
                    .bind(id.to_hex())
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    None => return Ok(None),
                    Some(r) => Some((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)),
                }
            }
        };
        let (at, id) = start.unzip();
        let rows = bind(PAGE)
            .bind(at)
            .bind(at)
            .bind(id)
            .bind(i64::from(limit).saturating_add(1))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let body: Vec<u8> = r.try_get(3)?;
            out.push(ConversationRow {
                id: r.try_get(0)?,
                from: r.try_get(1)?,
                you: r.try_get::<i64, _>(2)? != 0,
                body: String::from_utf8_lossy(&body).into_owned(),
                priority: r.try_get(4)?,
                reply_to: r.try_get(5)?,
                sent_at: u64::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0),
                read: r.try_get::<i64, _>(7)? != 0,
            });
        }
        let more = out.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(Some(ConversationPage { rows: out, more }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_client::local::LocalStore;
    use claudemesh_crypto::{Hash32, SigningKey};

    /// A row in the inbox as the client stores a verified message.
    async fn received(
        pool: &SqlitePool,
        mesh: &MeshId,
        from: &PublicKey,
        target: &str,
        id: &str,
        body: &str,
        sent_at: i64,
    ) {
        sqlx::query(
            "INSERT INTO inbox (mesh_id, sender_member, sender_session, msg_id, broker_seq, \
             target, priority, reply_to, sent_at, received_at, body) \
             VALUES (?, ?, 'aa', ?, 1, ?, 'next', NULL, ?, ?, ?)",
        )
        .bind(mesh.to_hex())
        .bind(from.to_hex())
        .bind(id)
        .bind(target)
        .bind(sent_at)
        .bind(sent_at + 1)
        .bind(body.as_bytes())
        .execute(pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn both_ways_newest_first_by_pages_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let pool = local.pool().clone();
        let store = Conversations::new(pool.clone());
        let mesh = MeshId(Hash32([1; 32]));
        let other_mesh = MeshId(Hash32([2; 32]));
        let me = SigningKey::generate().public();
        let bob = SigningKey::generate().public();
        let carol = SigningKey::generate().public();
        let me_target = format!("member:{}", me.to_hex());
        let id = |n: u8| MessageId([n; 16]);

        received(
            &pool,
            &mesh,
            &bob,
            &me_target,
            &id(1).to_hex(),
            "bob 1",
            100,
        )
        .await;
        for (n, at, reply) in [(2u8, 200u64, Some(id(1))), (4, 400, None)] {
            let sent = SentDirect {
                mesh: &mesh,
                id: &id(n),
                recipient: &bob,
                target: &format!("member:{}", bob.to_hex()),
                body: &format!("me {n}"),
                priority: Priority::Now,
                reply_to: reply.as_ref(),
                sent_at: at,
            };
            store.remember(&sent).await.unwrap();
            // A retried send is kept once.
            store.remember(&sent).await.unwrap();
        }
        // To one of this member's sessions: direct too.
        received(
            &pool,
            &mesh,
            &bob,
            "session:ab",
            &id(3).to_hex(),
            "bob 3",
            300,
        )
        .await;
        // Not this conversation: a topic, another peer, another mesh.
        received(
            &pool,
            &mesh,
            &bob,
            "#deploys",
            &id(5).to_hex(),
            "topic",
            250,
        )
        .await;
        received(
            &pool,
            &mesh,
            &carol,
            &me_target,
            &id(6).to_hex(),
            "carol",
            260,
        )
        .await;
        received(
            &pool,
            &other_mesh,
            &bob,
            &me_target,
            &id(7).to_hex(),
            "x",
            270,
        )
        .await;

        let all = store
            .page(&mesh, &me, &bob, None, 10)
            .await
            .unwrap()
            .unwrap();
        let bodies: Vec<&str> = all.rows.iter().map(|r| r.body.as_str()).collect();
        assert_eq!(bodies, ["me 4", "bob 3", "me 2", "bob 1"]);
        assert!(!all.more);
        let mine = &all.rows[2];
        assert!(mine.you && mine.read, "{mine:?}");
        assert_eq!(mine.from, me.to_hex());
        assert_eq!(mine.priority, "now");
        assert_eq!(mine.reply_to.as_deref(), Some(id(1).to_hex().as_str()));
        assert_eq!(mine.sent_at, 200);
        let theirs = &all.rows[3];
        assert!(!theirs.you && !theirs.read, "{theirs:?}");
        assert_eq!(theirs.from, bob.to_hex());

        let first = store
            .page(&mesh, &me, &bob, None, 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.rows.len(), 2);
        assert!(first.more);
        let next = store
            .page(&mesh, &me, &bob, Some(&id(3)), 2)
            .await
            .unwrap()
            .unwrap();
        let bodies: Vec<&str> = next.rows.iter().map(|r| r.body.as_str()).collect();
        assert_eq!(bodies, ["me 2", "bob 1"]);
        assert!(!next.more);
        // A message of another conversation is no place to start from.
        assert!(
            store
                .page(&mesh, &me, &bob, Some(&id(6)), 2)
                .await
                .unwrap()
                .is_none()
        );
        // The other way round, from carol's side of nothing: empty.
        let none = store
            .page(&mesh, &me, &carol, Some(&id(6)), 2)
            .await
            .unwrap()
            .unwrap();
        assert!(none.rows.is_empty() && !none.more);
    }
}
