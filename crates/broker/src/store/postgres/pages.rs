//! Reading queues page by page on Postgres: a recipient's direct messages
//! ([`pending`]), a member's fan-out messages across its targets
//! ([`fanout_pages`]). Every page is cut by the weight of its envelopes
//! before any envelope is read. (A target's history and a sent message's
//! delivery state are the same statements on both backends, in
//! `store/shared.rs`.)

use claudemesh_crypto::envelope::Priority;
use claudemesh_crypto::{MeshId, PublicKey};
use sqlx::Row;
use sqlx::postgres::PgPool;

use super::batch::small;
use crate::store::codec::{
    key_bytes, key_from_bytes, priority_from_rank, priority_rank, to_i64, to_u64,
};
use crate::store::error::StoreError;
use crate::store::records::{FanoutRow, PageLimit, PendingMessage};

pub(super) async fn pending(
    pool: &PgPool,
    mesh: &MeshId,
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
         SELECT m.seq, m.envelope, m.created_at_ms, m.deadline_ms FROM cut \
         JOIN messages m ON m.seq = cut.seq ORDER BY m.seq",
    )
    .bind(&mesh.as_bytes()[..])
    .bind(keys)
    .bind(to_i64(after_seq))
    .bind(small(priority_rank(max_priority)))
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
    pool: &PgPool,
    mesh: &MeshId,
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
         CASE WHEN cut.acked THEN NULL ELSE m.envelope END, m.sender_member, m.priority, \
         m.tseq, m.deadline_ms \
         FROM cut JOIN messages m ON m.seq = cut.seq ORDER BY m.seq",
    )
    .bind(&mesh.as_bytes()[..])
    .bind(key_bytes(member))
    .bind(names)
    .bind(since)
    .bind(to_i64(after_seq))
    .bind(i64::from(limit.rows))
    .bind(to_i64(limit.bytes))
    .fetch_all(pool)
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
                tseq: r.try_get::<Option<i64>, _>(8)?.map(to_u64),
                deadline_ms: r.try_get::<Option<i64>, _>(9)?.map(to_u64),
            })
        })
        .collect()
}
