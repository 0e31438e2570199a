//! The group-commit writer's batch on Postgres: new messages (duplicates
//! skipped) with their delivery rows, then acks (delivery states and
//! fan-out receipts), in one transaction of a constant number of statements
//! (whole columns bound as arrays and unnested server-side), retried when
//! it loses a deadlock to another replica.

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::store::codec::{key_bytes, priority_rank, state_rank, to_i64, to_u64};
use crate::store::error::StoreError;
use crate::store::records::{self, AckOp, InsertOutcome, NewMessage};
use crate::store::sql;

/// Stores `messages` (skipping duplicates) and applies `acks`, all or
/// nothing.
pub(super) async fn write_batch(
    pool: &PgPool,
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
        match write_batch_once(pool, messages, acks).await {
            Err(StoreError::Db(e)) if attempt < BATCH_ATTEMPTS && is_transient(&e) => {
                tracing::debug!("write batch attempt {attempt} failed, retrying: {e}");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A priority or delivery state as stored (`SMALLINT`). Ranks are 0..=3.
pub(super) fn small(rank: i64) -> i16 {
    i16::try_from(rank).unwrap_or(i16::MAX)
}

/// A message's identity: (mesh, sender member, message id).
type MessageKey = ([u8; 32], [u8; 32], [u8; 16]);

fn message_key(m: &NewMessage) -> MessageKey {
    (*m.mesh.as_bytes(), m.sender_member.to_bytes(), m.id.0)
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

/// One attempt at [`write_batch`]: one transaction, at most five
/// statements whatever the batch size.
async fn write_batch_once(
    pool: &PgPool,
    messages: &[NewMessage],
    acks: &[AckOp],
) -> Result<Vec<InsertOutcome>, StoreError> {
    let mut tx = pool.begin().await?;
    // Held rows are taken in key order, the order every replica takes
    // them in, so two replicas firing the same rows wait on each other
    // rather than deadlock.
    let mut taken = vec![true; messages.len()];
    let mut held: Vec<usize> = (0..messages.len()).filter(|&i| messages[i].held).collect();
    held.sort_by_key(|&i| message_key(&messages[i]));
    for i in held {
        taken[i] = take_held(&mut tx, &messages[i]).await?;
    }
    let kept = records::taken_only(messages, &taken);
    let messages_now = kept.as_deref().unwrap_or(messages);
    let out = if messages_now.is_empty() {
        Vec::new()
    } else {
        insert_messages(&mut tx, messages_now).await?
    };
    let out = if kept.is_some() {
        records::with_untaken(&taken, out)
    } else {
        out
    };
    apply_acks(&mut tx, acks).await?;
    tx.commit().await?;
    Ok(out)
}

/// Takes a held message whose time came off `scheduled_messages`; false
/// when it is no longer held (cancelled, or stored already). Another
/// replica taking the same row waits on its lock, then finds it gone.
async fn take_held(tx: &mut sqlx::PgTransaction<'_>, m: &NewMessage) -> Result<bool, StoreError> {
    Ok(sqlx::query(sql::TAKE_HELD)
        .bind(&m.mesh.as_bytes()[..])
        .bind(key_bytes(&m.sender_member))
        .bind(&m.id.0[..])
        .bind(to_i64(m.created_at_ms))
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
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
    let mut deadlines: Vec<Option<i64>> = Vec::with_capacity(n);
    for m in messages {
        at_lens.push(m.at_len.map(to_i64));
        deadlines.push(m.deadline_ms.map(to_i64));
        meshes.push(&m.mesh.as_bytes()[..]);
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
         size, created_at_ms, expires_at_ms, at_len, deadline_ms) OVERRIDING SYSTEM VALUE \
         SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[], $5::text[], \
         $6::smallint[], $7::text[], $8::integer[], $9::bigint[], $10::bigint[], $11::bigint[], \
         $12::bigint[]) \
         AS t(seq, mesh_id, sender_member, msg_id, target, priority, envelope, size, \
         created_at_ms, expires_at_ms, at_len, deadline_ms) \
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
    .bind(deadlines)
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
                tseq: None,
            })),
            None => {
                out.push(None);
                missing.push(i);
            }
        }
    }

    // 3. Look up the seqs of duplicates stored before this batch.
    if !missing.is_empty() {
        let d_meshes: Vec<&[u8]> = missing
            .iter()
            .map(|&i| &messages[i].mesh.as_bytes()[..])
            .collect();
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
                tseq: None,
            });
        }
    }
    let mut out = out
        .into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Corrupt("message outcome left unresolved".into())))
        .collect::<Result<Vec<_>, _>>()?;
    number_fanout(tx, messages, &mut out).await?;

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
            d_meshes.push(&m.mesh.as_bytes()[..]);
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

/// Gives each new fan-out message its number within its target, in seq
/// order: one counter statement per target of the batch (taken in target
/// order, so replicas lock the counters in the same order), then one
/// update. The counter's row lock holds another writer of the same target
/// until this transaction ends, so numbers follow commit order.
async fn number_fanout(
    tx: &mut sqlx::PgTransaction<'_>,
    messages: &[NewMessage],
    out: &mut [InsertOutcome],
) -> Result<(), StoreError> {
    let mut by_target: BTreeMap<(&[u8], &str), Vec<usize>> = BTreeMap::new();
    for (i, (m, o)) in messages.iter().zip(out.iter()).enumerate() {
        if m.at_len.is_some() && !o.duplicate {
            by_target
                .entry((&m.mesh.as_bytes()[..], m.target.as_str()))
                .or_default()
                .push(i);
        }
    }
    if by_target.is_empty() {
        return Ok(());
    }
    let mut seqs = Vec::new();
    let mut tseqs = Vec::new();
    for ((mesh, target), indexes) in by_target {
        let k = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
        let last: i64 = sqlx::query_scalar(sql::BUMP_TARGET_SEQ)
            .bind(mesh)
            .bind(target)
            .bind(k)
            .fetch_one(&mut **tx)
            .await?;
        for (n, i) in indexes.into_iter().enumerate() {
            let tseq = last - k + 1 + i64::try_from(n).unwrap_or(0);
            if let Some(o) = out.get_mut(i) {
                o.tseq = Some(to_u64(tseq));
                seqs.push(to_i64(o.seq));
                tseqs.push(tseq);
            }
        }
    }
    sqlx::query(
        "UPDATE messages m SET tseq = t.tseq \
         FROM UNNEST($1::bigint[], $2::bigint[]) AS t(seq, tseq) WHERE m.seq = t.seq",
    )
    .bind(seqs)
    .bind(tseqs)
    .execute(&mut **tx)
    .await?;
    Ok(())
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
            a_meshes.push(&a.mesh.as_bytes()[..]);
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
                r_meshes.push(&a.mesh.as_bytes()[..]);
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
