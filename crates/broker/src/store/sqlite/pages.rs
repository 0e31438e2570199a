//! Reading queues page by page on SQLite: a recipient's direct messages
//! ([`pending`]), a member's fan-out messages across its targets
//! ([`fanout_pages`]). Every page is cut by the weight of its envelopes
//! before any envelope is read. (A target's history and a sent message's
//! delivery state are the same statements on both backends, in
//! `store/shared.rs`.)

use claudemesh_crypto::envelope::Priority;
use claudemesh_crypto::{MeshId, PublicKey};
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Row};

use super::values::{ROWS_PER_STATEMENT, placeholders};
use crate::store::codec::{
    key_bytes, key_from_bytes, priority_from_rank, priority_rank, to_i64, to_u64,
};
use crate::store::error::StoreError;
use crate::store::records::{FanoutRow, PageLimit, PendingMessage, fanout_weight, first_of};

pub(super) async fn pending(
    pool: &SqlitePool,
    mesh: &MeshId,
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
         SELECT m.seq, m.envelope, m.created_at_ms, m.deadline_ms FROM cut \
         JOIN messages m ON m.seq = cut.seq ORDER BY m.seq",
    )
    .bind(&mesh.as_bytes()[..])
    .bind(key_bytes(first))
    .bind(key_bytes(second))
    .bind(to_i64(after_seq))
    .bind(priority_rank(max_priority))
    .bind(i64::from(limit.rows))
    .bind(to_i64(limit.bytes))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(PendingMessage {
            seq: to_u64(r.try_get(0)?),
            envelope_json: r.try_get(1)?,
            queued_at_ms: to_u64(r.try_get(2)?),
            tseq: None,
            deadline_ms: r.try_get::<Option<i64>, _>(3)?.map(to_u64),
        });
    }
    Ok(out)
}

pub(super) async fn fanout_pages(
    pool: &SqlitePool,
    mesh: &MeshId,
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
             CASE WHEN cut.acked THEN NULL ELSE m.envelope END, m.sender_member, m.priority, \
             m.tseq, m.deadline_ms \
             FROM cut JOIN messages m ON m.seq = cut.seq ORDER BY m.seq",
            placeholders(chunk.len(), 2)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (target, since) in chunk {
            q = q.bind(target).bind(to_i64(*since));
        }
        let rows = q
            .bind(&mesh.as_bytes()[..])
            .bind(key_bytes(member))
            .bind(to_i64(after_seq))
            .bind(&mesh.as_bytes()[..])
            .bind(key_bytes(member))
            .bind(i64::from(limit.rows))
            .bind(key_bytes(member))
            .bind(i64::from(limit.rows))
            .bind(to_i64(limit.bytes))
            .fetch_all(pool)
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
                tseq: r.try_get::<Option<i64>, _>(8)?.map(to_u64),
                deadline_ms: r.try_get::<Option<i64>, _>(9)?.map(to_u64),
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
