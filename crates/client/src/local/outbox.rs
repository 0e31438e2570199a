//! The outbox in `state.db`: every sealed envelope is written before it
//! is sent and resent with the same id until the broker accepts it (or
//! refuses it for good), so a crash or a lost connection never loses or
//! doubles a message. A message sent with a time to live keeps its
//! deadline here (fixed at the original send), so a resend carries only
//! what remains of it, or is not sent at all (`expired`, [`crate::ttl`]).
//! A message to deliver later keeps its delivery time here, so a resend
//! still asks the broker to hold it; once the broker holds it the entry is
//! `scheduled` (never resent), and `cancelled` once the user cancels it
//! ([`crate::schedule`]).

use claudemesh_crypto::MeshId;
use claudemesh_crypto::envelope::{Envelope, MessageId};
use sqlx::Row;

use super::{LocalStore, i, mesh_key, u};
use crate::error::ClientError;

/// An outbox entry.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// Message id.
    pub id: MessageId,
    /// Target as sent.
    pub target: String,
    /// `pending`, `accepted`, `failed`, `expired` (its time to live ran
    /// out before the broker accepted it), `scheduled` (the broker holds it
    /// until `deliver_at_ms`; it becomes `accepted` here only when
    /// `message status` finds it sent) or `cancelled` (dropped before it
    /// was sent).
    pub state: String,
    /// Broker seq once accepted.
    pub seq: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix ms.
    pub created_at: u64,
    /// A fan-out message's number within its target, once accepted.
    pub tseq: Option<u64>,
    /// Sent with a time to live: when it expires (unix ms, this device's
    /// clock: the original send plus the TTL; for a scheduled message,
    /// its delivery time plus the TTL).
    pub deadline_ms: Option<u64>,
    /// Sent to be delivered later: when (unix ms, the broker's clock).
    pub deliver_at_ms: Option<u64>,
}

/// An outbox message not yet accepted, to resend.
#[derive(Debug, Clone)]
pub struct PendingSend {
    /// The sealed envelope.
    pub envelope: Envelope,
    /// Its deadline, when it was sent with a time to live (unix ms, this
    /// device's clock).
    pub deadline_ms: Option<u64>,
    /// When the broker is to deliver it, if later (unix ms, the broker's
    /// clock).
    pub deliver_at_ms: Option<u64>,
}

/// A pending row (`envelope`, `deadline_ms`, `deliver_at_ms`) as a
/// [`PendingSend`].
fn pending_send(r: &sqlx::sqlite::SqliteRow) -> Result<PendingSend, ClientError> {
    let text: &str = r.try_get(0)?;
    Ok(PendingSend {
        envelope: serde_json::from_str(text)
            .map_err(|e| ClientError::Local(format!("damaged outbox entry: {e}")))?,
        deadline_ms: r.try_get::<Option<i64>, _>(1)?.map(u),
        deliver_at_ms: r.try_get::<Option<i64>, _>(2)?.map(u),
    })
}

impl LocalStore {
    /// Writes a sealed envelope to the outbox before it is sent.
    pub async fn outbox_put(&self, env: &Envelope, now: u64) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT OR IGNORE INTO outbox (mesh_id, msg_id, target, envelope, created_at, state) \
             VALUES (?, ?, ?, ?, ?, 'pending')",
        )
        .bind(mesh_key(&env.mesh))
        .bind(env.id.to_hex())
        .bind(env.target.to_string())
        .bind(serde_json::to_string(env).unwrap_or_default())
        .bind(i(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes (or, for a message resealed under a new key with the same
    /// id, replaces) an outbox envelope, pending again, without a time to
    /// live.
    pub async fn outbox_upsert(&self, env: &Envelope, now: u64) -> Result<(), ClientError> {
        self.outbox_upsert_until(env, None, now).await
    }

    /// [`LocalStore::outbox_upsert`] of a message that expires at
    /// `deadline_ms` (unix ms) unless the broker accepts it and it is
    /// shown by then.
    pub async fn outbox_upsert_until(
        &self,
        env: &Envelope,
        deadline_ms: Option<u64>,
        now: u64,
    ) -> Result<(), ClientError> {
        self.outbox_upsert_timed(env, deadline_ms, None, now).await
    }

    /// [`LocalStore::outbox_upsert_until`] of a message the broker is to
    /// deliver at `deliver_at_ms` (unix ms, the broker's clock), kept so a
    /// resend asks for the same time.
    pub async fn outbox_upsert_timed(
        &self,
        env: &Envelope,
        deadline_ms: Option<u64>,
        deliver_at_ms: Option<u64>,
        now: u64,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO outbox (mesh_id, msg_id, target, envelope, created_at, state, deadline_ms, \
             deliver_at_ms) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) \
             ON CONFLICT (mesh_id, msg_id) DO UPDATE SET \
             envelope = excluded.envelope, target = excluded.target, state = 'pending', \
             error = NULL, deadline_ms = excluded.deadline_ms, \
             deliver_at_ms = excluded.deliver_at_ms WHERE outbox.state != 'accepted'",
        )
        .bind(mesh_key(&env.mesh))
        .bind(env.id.to_hex())
        .bind(env.target.to_string())
        .bind(serde_json::to_string(env).unwrap_or_default())
        .bind(i(now))
        .bind(deadline_ms.map(i))
        .bind(deliver_at_ms.map(i))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One pending outbox message by id, with its deadline.
    pub async fn outbox_pending_one(
        &self,
        mesh: &MeshId,
        id: &MessageId,
    ) -> Result<Option<PendingSend>, ClientError> {
        let row = sqlx::query(
            "SELECT envelope, deadline_ms, deliver_at_ms FROM outbox \
             WHERE mesh_id = ? AND msg_id = ? AND state = 'pending'",
        )
        .bind(mesh_key(mesh))
        .bind(id.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pending_send).transpose()
    }

    /// Messages not yet accepted, with their deadlines, oldest first.
    pub async fn outbox_pending_sends(
        &self,
        mesh: &MeshId,
    ) -> Result<Vec<PendingSend>, ClientError> {
        let rows = sqlx::query(
            "SELECT envelope, deadline_ms, deliver_at_ms FROM outbox \
             WHERE mesh_id = ? AND state = 'pending' ORDER BY created_at",
        )
        .bind(mesh_key(mesh))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pending_send).collect()
    }

    /// Marks a pending outbox entry expired: its time to live ran out
    /// before the broker accepted it, so it is never sent again.
    pub async fn outbox_expired(&self, mesh: &MeshId, id: &MessageId) -> Result<(), ClientError> {
        sqlx::query(
            "UPDATE outbox SET state = 'expired', \
             error = 'its time to live ran out before the broker accepted it' \
             WHERE mesh_id = ? AND msg_id = ? AND state = 'pending'",
        )
        .bind(mesh_key(mesh))
        .bind(id.to_hex())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Envelopes not yet accepted, oldest first.
    pub async fn outbox_pending(&self, mesh: &MeshId) -> Result<Vec<Envelope>, ClientError> {
        let rows = sqlx::query(
            "SELECT envelope FROM outbox WHERE mesh_id = ? AND state = 'pending' ORDER BY created_at",
        )
        .bind(mesh_key(mesh))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let text: &str = r.try_get(0)?;
                serde_json::from_str(text)
                    .map_err(|e| ClientError::Local(format!("damaged outbox entry: {e}")))
            })
            .collect()
    }

    /// Marks outbox entries accepted by the broker, in one transaction:
    /// (id, broker seq, a fan-out message's number within its target).
    pub async fn outbox_accepted(
        &self,
        mesh: &MeshId,
        accepted: &[(MessageId, u64, Option<u64>)],
        at: u64,
    ) -> Result<(), ClientError> {
        let mut tx = self.write_tx().await?;
        for (id, seq, tseq) in accepted {
            sqlx::query(
                "UPDATE outbox SET state = 'accepted', broker_seq = ?, tseq = COALESCE(?, tseq), \
                 accepted_at = ?, error = NULL WHERE mesh_id = ? AND msg_id = ?",
            )
            .bind(i(*seq))
            .bind(tseq.map(i))
            .bind(i(at))
            .bind(mesh_key(mesh))
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks outbox entries the broker holds for later (`scheduled`: never
    /// resent), each with the delivery time the broker confirmed (unix ms,
    /// its clock), in one transaction. An entry already `accepted` (or
    /// `cancelled`) stays so.
    pub async fn outbox_scheduled(
        &self,
        mesh: &MeshId,
        scheduled: &[(MessageId, u64)],
    ) -> Result<(), ClientError> {
        let mut tx = self.write_tx().await?;
        for (id, deliver_at_ms) in scheduled {
            sqlx::query(
                "UPDATE outbox SET state = 'scheduled', deliver_at_ms = ?, error = NULL \
                 WHERE mesh_id = ? AND msg_id = ? AND state NOT IN ('accepted', 'cancelled')",
            )
            .bind(i(*deliver_at_ms))
            .bind(mesh_key(mesh))
            .bind(id.to_hex())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks an outbox entry cancelled before the broker sent it (`schedule
    /// cancel`): it is never resent. Returns whether this device had it
    /// still pending or scheduled.
    pub async fn outbox_cancelled(
        &self,
        mesh: &MeshId,
        id: &MessageId,
    ) -> Result<bool, ClientError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'cancelled', error = NULL \
             WHERE mesh_id = ? AND msg_id = ? AND state IN ('pending', 'scheduled')",
        )
        .bind(mesh_key(mesh))
        .bind(id.to_hex())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks an outbox entry refused for good (it will not be resent).
    pub async fn outbox_failed(
        &self,
        mesh: &MeshId,
        id: &MessageId,
        error: &str,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "UPDATE outbox SET state = 'failed', error = ? WHERE mesh_id = ? AND msg_id = ?",
        )
        .bind(error)
        .bind(mesh_key(mesh))
        .bind(id.to_hex())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One outbox entry's sealed envelope (any state).
    pub async fn outbox_envelope(
        &self,
        mesh: &MeshId,
        id: &MessageId,
    ) -> Result<Option<Envelope>, ClientError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT envelope FROM outbox WHERE mesh_id = ? AND msg_id = ?")
                .bind(mesh_key(mesh))
                .bind(id.to_hex())
                .fetch_optional(&self.pool)
                .await?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| ClientError::Local(format!("damaged outbox entry: {e}")))
        })
        .transpose()
    }

    /// One outbox entry.
    pub async fn outbox_get(
        &self,
        mesh: &MeshId,
        id: &MessageId,
    ) -> Result<Option<OutboxEntry>, ClientError> {
        let row = sqlx::query(
            "SELECT target, state, broker_seq, error, created_at, tseq, deadline_ms, \
             deliver_at_ms FROM outbox WHERE mesh_id = ? AND msg_id = ?",
        )
        .bind(mesh_key(mesh))
        .bind(id.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(OutboxEntry {
                id: *id,
                target: r.try_get(0)?,
                state: r.try_get(1)?,
                seq: r.try_get::<Option<i64>, _>(2)?.map(u),
                error: r.try_get(3)?,
                created_at: u(r.try_get(4)?),
                tseq: r.try_get::<Option<i64>, _>(5)?.map(u),
                deadline_ms: r.try_get::<Option<i64>, _>(6)?.map(u),
                deliver_at_ms: r.try_get::<Option<i64>, _>(7)?.map(u),
            })
        })
        .transpose()
    }
}
