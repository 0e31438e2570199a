//! What this device owes senders as signed receipts (issue 15,
//! `docs/security.md` §8.1), kept in the inbox so nothing owed is lost to a
//! dropped connection or a restart: which messages were shown (and how),
//! which were answered (and by which reply), and whether each one's signed
//! receipt was sent. A fan-out target's watermarks are read off the
//! numbers (`tseq`) of the messages this device holds of it: those it
//! stored (delivered) or showed (shown), and its own posts.

use claudemesh_crypto::MeshId;
use claudemesh_crypto::receipt::Via;
use sqlx::Row;

use super::{LocalStore, i, mesh_key, u};
use crate::error::ClientError;

/// Most receipts of one kind read per flush.
const DUE_BATCH: i64 = 256;

/// Most numbers of one fan-out target read to make its watermark: it
/// covers no further back (an under-report, never an over-report).
pub const HELD_WINDOW: u64 = 1024;

/// The condition that the column `$col` names a direct target (a member
/// or a session).
macro_rules! direct {
    ($col:literal) => {
        concat!(
            "(",
            $col,
            " LIKE 'member:%' OR ",
            $col,
            " LIKE 'session:%')"
        )
    };
}

/// A direct message shown whose signed `shown` receipt is not sent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownDue {
    /// Local row id.
    pub local_id: i64,
    /// The sender's member key (hex).
    pub sender: String,
    /// The message id (hex).
    pub msg_id: String,
    /// The target as sent (`member:<hex>` or `session:<hex>`).
    pub target: String,
    /// Broker seq.
    pub seq: u64,
    /// When it was shown, unix ms.
    pub shown_at: u64,
    /// How it was shown ([`Via::Inbox`] for rows shown before receipts).
    pub via: Via,
}

/// A message answered whose signed `answered` receipt is not sent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredDue {
    /// Local row id.
    pub local_id: i64,
    /// The sender's member key (hex).
    pub sender: String,
    /// The message id (hex).
    pub msg_id: String,
    /// The target as sent.
    pub target: String,
    /// Broker seq.
    pub seq: u64,
    /// The reply's id (hex).
    pub reply: String,
}

/// A stored `via` (NULL or unknown: shown by `inbox` before receipts).
fn via_of(text: Option<&str>) -> Via {
    match text {
        Some("store") => Via::Store,
        Some("mcp_tool") => Via::McpTool,
        Some("channel") => Via::Channel,
        Some("hook") => Via::Hook,
        Some("gateway") => Via::Gateway,
        Some("web") => Via::Web,
        Some("reply") => Via::Reply,
        _ => Via::Inbox,
    }
}

impl LocalStore {
    /// Marks inbox rows shown, `via` how: the first showing counts. A
    /// fan-out row owes no receipt of its own (its target's shown
    /// watermark covers it), so only a direct one is left due. A row whose
    /// deadline passed by `at` expired unshown, and stays so.
    pub async fn mark_shown(
        &self,
        mesh: &MeshId,
        local_ids: &[i64],
        at: u64,
        via: Via,
    ) -> Result<(), ClientError> {
        let mut tx = self.write_tx().await?;
        for id in local_ids {
            sqlx::query(concat!(
                "UPDATE inbox SET read_at = ?, shown_via = ?, read_acked = CASE WHEN ",
                direct!("target"),
                " THEN 0 ELSE 1 END WHERE mesh_id = ? AND id = ? AND read_at IS NULL \
                 AND (deadline_ms IS NULL OR deadline_ms > ?)"
            ))
            .bind(i(at))
            .bind(via.as_str())
            .bind(mesh_key(mesh))
            .bind(id)
            .bind(i(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// [`LocalStore::mark_shown`] by sender and message id (hex), for
    /// messages known from an event rather than a listing (an expired row
    /// stays unshown here too).
    pub async fn mark_shown_by_id(
        &self,
        mesh: &MeshId,
        messages: &[(&str, &str)],
        at: u64,
        via: Via,
    ) -> Result<(), ClientError> {
        let mut tx = self.write_tx().await?;
        for (sender, id) in messages {
            sqlx::query(concat!(
                "UPDATE inbox SET read_at = ?, shown_via = ?, read_acked = CASE WHEN ",
                direct!("target"),
                " THEN 0 ELSE 1 END \
                 WHERE mesh_id = ? AND sender_member = ? AND msg_id = ? AND read_at IS NULL \
                 AND (deadline_ms IS NULL OR deadline_ms > ?)"
            ))
            .bind(i(at))
            .bind(via.as_str())
            .bind(mesh_key(mesh))
            .bind(sender)
            .bind(id)
            .bind(i(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Direct messages shown whose signed receipt is not sent yet, oldest
    /// first: those to a member, and those to the session `my_session`
    /// (`session:<hex>`; another session's are its own to sign).
    pub async fn shown_receipts_due(
        &self,
        mesh: &MeshId,
        my_session: &str,
    ) -> Result<Vec<ShownDue>, ClientError> {
        let rows = sqlx::query(
            "SELECT id, sender_member, msg_id, target, broker_seq, read_at, shown_via FROM inbox \
             WHERE mesh_id = ? AND read_at IS NOT NULL AND read_acked = 0 \
             AND (target LIKE 'member:%' OR target = ?) ORDER BY id LIMIT ?",
        )
        .bind(mesh_key(mesh))
        .bind(my_session)
        .bind(DUE_BATCH)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ShownDue {
                    local_id: r.try_get(0)?,
                    sender: r.try_get(1)?,
                    msg_id: r.try_get(2)?,
                    target: r.try_get(3)?,
                    seq: u(r.try_get(4)?),
                    shown_at: u(r.try_get(5)?),
                    via: via_of(r.try_get::<Option<String>, _>(6)?.as_deref()),
                })
            })
            .collect()
    }

    /// Records that the shown receipts of these rows were sent.
    pub async fn shown_receipts_sent(
        &self,
        mesh: &MeshId,
        local_ids: &[i64],
    ) -> Result<(), ClientError> {
        self.set_flag(
            "UPDATE inbox SET read_acked = 1 WHERE mesh_id = ? AND id = ?",
            mesh,
            local_ids,
        )
        .await
    }

    /// Records that this device answered the message `reply_to` (hex) with
    /// the accepted message `reply` (hex) sent to `reply_target`. Of the
    /// inbox rows with that id (in practice one), the one in the same
    /// thread is preferred: sent to `reply_target`, or by the member the
    /// reply went to. The first answer counts; false when no row was
    /// changed (not in this inbox, or answered before).
    pub async fn record_answer(
        &self,
        mesh: &MeshId,
        reply_to: &str,
        reply: &str,
        reply_target: &str,
    ) -> Result<bool, ClientError> {
        let done = sqlx::query(
            "UPDATE inbox SET answered_reply = ? WHERE answered_reply IS NULL AND id = \
             (SELECT id FROM inbox WHERE mesh_id = ? AND msg_id = ? \
              ORDER BY (target = ?) DESC, ('member:' || sender_member = ?) DESC, id LIMIT 1)",
        )
        .bind(reply)
        .bind(mesh_key(mesh))
        .bind(reply_to)
        .bind(reply_target)
        .bind(reply_target)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Messages answered whose signed receipt is not sent yet, oldest
    /// first, except those sent to another session than `my_session`.
    pub async fn answered_receipts_due(
        &self,
        mesh: &MeshId,
        my_session: &str,
    ) -> Result<Vec<AnsweredDue>, ClientError> {
        let rows = sqlx::query(
            "SELECT id, sender_member, msg_id, target, broker_seq, answered_reply FROM inbox \
             WHERE mesh_id = ? AND answered_reply IS NOT NULL AND answered_sent = 0 \
             AND (target NOT LIKE 'session:%' OR target = ?) ORDER BY id LIMIT ?",
        )
        .bind(mesh_key(mesh))
        .bind(my_session)
        .bind(DUE_BATCH)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AnsweredDue {
                    local_id: r.try_get(0)?,
                    sender: r.try_get(1)?,
                    msg_id: r.try_get(2)?,
                    target: r.try_get(3)?,
                    seq: u(r.try_get(4)?),
                    reply: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Records that the answered receipts of these rows were sent.
    pub async fn answered_receipts_sent(
        &self,
        mesh: &MeshId,
        local_ids: &[i64],
    ) -> Result<(), ClientError> {
        self.set_flag(
            "UPDATE inbox SET answered_sent = 1 WHERE mesh_id = ? AND id = ?",
            mesh,
            local_ids,
        )
        .await
    }

    async fn set_flag(
        &self,
        sql: &'static str,
        mesh: &MeshId,
        ids: &[i64],
    ) -> Result<(), ClientError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for id in ids {
            sqlx::query(sql)
                .bind(mesh_key(mesh))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The fan-out targets this device holds numbered messages of
    /// (received, or posted and accepted).
    pub async fn fanout_targets_held(&self, mesh: &MeshId) -> Result<Vec<String>, ClientError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT target FROM inbox WHERE mesh_id = ?1 AND tseq IS NOT NULL \
             UNION SELECT DISTINCT target FROM outbox WHERE mesh_id = ?1 AND tseq IS NOT NULL",
        )
        .bind(mesh_key(mesh))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The numbers (`tseq`) of the messages of a fan-out target this device
    /// holds, newest first, at most [`HELD_WINDOW`]: every one it stored
    /// (`shown_only`: every one it showed), and its own posts the broker
    /// accepted (never delivered back to it).
    pub async fn fanout_held(
        &self,
        mesh: &MeshId,
        target: &str,
        shown_only: bool,
    ) -> Result<Vec<u64>, ClientError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            // Each side newest first through its (mesh, target, tseq) index,
            // so a long history costs no more than the window.
            "SELECT tseq FROM (SELECT tseq FROM inbox \
               WHERE mesh_id = ?1 AND target = ?2 AND tseq IS NOT NULL \
               AND (?3 = 0 OR read_at IS NOT NULL) ORDER BY tseq DESC LIMIT ?4) \
             UNION SELECT tseq FROM (SELECT tseq FROM outbox \
               WHERE mesh_id = ?1 AND target = ?2 AND tseq IS NOT NULL \
               ORDER BY tseq DESC LIMIT ?4) \
             ORDER BY 1 DESC LIMIT ?4",
        )
        .bind(mesh_key(mesh))
        .bind(target)
        .bind(i64::from(shown_only))
        .bind(i(HELD_WINDOW))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(u).collect())
    }

    /// How the newest shown message of a fan-out target was shown.
    pub async fn fanout_last_via(&self, mesh: &MeshId, target: &str) -> Result<Via, ClientError> {
        let via: Option<Option<String>> = sqlx::query_scalar(
            "SELECT shown_via FROM inbox WHERE mesh_id = ? AND target = ? AND tseq IS NOT NULL \
             AND read_at IS NOT NULL ORDER BY tseq DESC LIMIT 1",
        )
        .bind(mesh_key(mesh))
        .bind(target)
        .fetch_optional(&self.pool)
        .await?;
        Ok(via_of(via.flatten().as_deref()))
    }
}
