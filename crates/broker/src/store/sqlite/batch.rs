//! The group-commit writer's batch on SQLite: new messages (duplicates
//! skipped) with their delivery rows, then acks (delivery states and
//! fan-out receipts), in one transaction and as few multi-row statements as
//! SQLite's variable limit allows.

use std::collections::{BTreeMap, HashMap, HashSet};

use claudemesh_crypto::PublicKey;
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};

use super::values::{ROWS_PER_STATEMENT, placeholders, placeholders_with};
use crate::store::codec::{key_bytes, priority_rank, state_rank, to_i64, to_u64};
use crate::store::error::StoreError;
use crate::store::records::{self, AckOp, InsertOutcome, NewMessage};
use crate::store::sql;

/// A message's identity as stored: (mesh, sender member, message id).
type MessageKey = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Stores `messages` (skipping duplicates) and applies `acks` in `tx`,
/// which holds the write lock, and commits it.
pub(super) async fn write_batch(
    mut tx: Transaction<'static, Sqlite>,
    messages: &[NewMessage],
    acks: &[AckOp],
) -> Result<Vec<InsertOutcome>, StoreError> {
    let mut taken = Vec::with_capacity(messages.len());
    for m in messages {
        taken.push(!m.held || take_held(&mut tx, m).await?);
    }
    match records::taken_only(messages, &taken) {
        None => write_taken(tx, messages, acks).await,
        Some(kept) => Ok(records::with_untaken(
            &taken,
            write_taken(tx, &kept, acks).await?,
        )),
    }
}

/// Takes a held message whose time came off `scheduled_messages`; false
/// when it is no longer held (cancelled, or stored already).
async fn take_held(
    tx: &mut Transaction<'static, Sqlite>,
    m: &NewMessage,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(sql::TAKE_HELD)
        .bind(&m.mesh.as_bytes()[..])
        .bind(key_bytes(&m.sender_member))
        .bind(&m.id.0[..])
        .bind(to_i64(m.created_at_ms))
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// [`write_batch`] once the held messages are taken.
async fn write_taken(
    mut tx: Transaction<'static, Sqlite>,
    messages: &[NewMessage],
    acks: &[AckOp],
) -> Result<Vec<InsertOutcome>, StoreError> {
    // Multi-row statements: each statement is a round trip to sqlx's
    // SQLite worker thread, so one per row made a batch cost ~120 µs a
    // message. Placeholders only; every value is bound.
    let mut out: Vec<Option<InsertOutcome>> = vec![None; messages.len()];
    let mut deliveries: Vec<(i64, &NewMessage)> = Vec::new();
    let mut duplicates = Vec::new();
    for (chunk_no, chunk) in messages.chunks(ROWS_PER_STATEMENT).enumerate() {
        let sql = format!(
            "INSERT INTO messages (mesh_id, sender_member, msg_id, target, priority, envelope, \
             size, created_at_ms, expires_at_ms, at_len, deadline_ms) VALUES {} \
             ON CONFLICT (mesh_id, sender_member, msg_id) DO NOTHING \
             RETURNING seq, mesh_id, sender_member, msg_id",
            placeholders(chunk.len(), 11)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for m in chunk {
            q = q
                .bind(&m.mesh.as_bytes()[..])
                .bind(key_bytes(&m.sender_member))
                .bind(&m.id.0[..])
                .bind(&m.target)
                .bind(priority_rank(m.priority))
                .bind(&m.envelope_json)
                .bind(i64::try_from(m.envelope_json.len()).unwrap_or(i64::MAX))
                .bind(to_i64(m.created_at_ms))
                .bind(to_i64(m.expires_at_ms))
                .bind(m.at_len.map(to_i64))
                .bind(m.deadline_ms.map(to_i64));
        }
        let mut inserted: HashMap<MessageKey, i64> = HashMap::new();
        for r in q.fetch_all(&mut *tx).await? {
            inserted.insert((r.try_get(1)?, r.try_get(2)?, r.try_get(3)?), r.try_get(0)?);
        }
        for (i, m) in chunk.iter().enumerate() {
            let index = chunk_no * ROWS_PER_STATEMENT + i;
            let key = (
                m.mesh.as_bytes().to_vec(),
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
                        tseq: None,
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
        .bind(&m.mesh.as_bytes()[..])
        .bind(key_bytes(&m.sender_member))
        .bind(&m.id.0[..])
        .fetch_one(&mut *tx)
        .await?;
        out[index] = Some(InsertOutcome {
            seq: to_u64(seq),
            duplicate: true,
            tseq: None,
        });
    }
    // Each new fan-out message's number within its target, in seq order:
    // one counter statement per target of the batch, then one update.
    let mut by_target: BTreeMap<(&[u8], &str), Vec<usize>> = BTreeMap::new();
    for (i, (m, o)) in messages.iter().zip(&out).enumerate() {
        if m.at_len.is_some() && o.is_some_and(|o| !o.duplicate) {
            by_target
                .entry((&m.mesh.as_bytes()[..], m.target.as_str()))
                .or_default()
                .push(i);
        }
    }
    let mut numbered: Vec<(i64, i64)> = Vec::new();
    for ((mesh, target), indexes) in by_target {
        let k = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
        let last: i64 = sqlx::query_scalar(sql::BUMP_TARGET_SEQ)
            .bind(mesh)
            .bind(target)
            .bind(k)
            .fetch_one(&mut *tx)
            .await?;
        for (n, i) in indexes.into_iter().enumerate() {
            let tseq = last - k + 1 + i64::try_from(n).unwrap_or(0);
            if let Some(o) = out[i].as_mut() {
                o.tseq = Some(to_u64(tseq));
                numbered.push((to_i64(o.seq), tseq));
            }
        }
    }
    for chunk in numbered.chunks(ROWS_PER_STATEMENT / 3) {
        let sql = format!(
            "UPDATE messages SET tseq = CASE seq {} END WHERE seq IN ({})",
            vec!["WHEN ? THEN ?"; chunk.len()].join(" "),
            vec!["?"; chunk.len()].join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (seq, tseq) in chunk {
            q = q.bind(*seq).bind(*tseq);
        }
        for (seq, _) in chunk {
            q = q.bind(*seq);
        }
        q.execute(&mut *tx).await?;
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
                .bind(&m.mesh.as_bytes()[..])
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
    let mut direct: HashSet<u64> = HashSet::new();
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
                .bind(&a.mesh.as_bytes()[..])
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
                .bind(&a.mesh.as_bytes()[..])
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
