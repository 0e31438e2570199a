//! The Rust both backends run word for word, written once: [`impl_store`]
//! expands the [`Store`](super::Store) methods whose bodies are the same for
//! SQLite and Postgres (the statements of `sql.rs`, bound and read alike)
//! inside each backend's `impl Store`; [`migration`] builds one embedded
//! migration for either, and [`rows_as_text`] reads a dumped table's rows.
//!
//! Why a macro and not generic functions: the two pools are different sqlx
//! types (`SqlitePool`, `PgPool`), and a function generic over sqlx's
//! `Database` would need a bound for every type it binds or reads
//! (`Encode`, `Decode`, `Type`, `ColumnIndex`, `IntoArguments`, …), longer
//! than the code itself. A macro needs none: each expansion is checked
//! against its own backend's concrete types. It takes the whole `impl`
//! (the backend's own methods passed through) because `#[async_trait]`
//! rewrites only the `async fn`s it sees, not those a macro inside the
//! block would expand later.
//!
//! What each backend must have for the expansion: `self.pool`,
//! `self.latest_migration`, `self.write_tx()` (a write transaction),
//! `Self::insert_log_entries` (a log append's rows: `UNNEST` on Postgres,
//! one `INSERT` each on SQLite), a type `Rank` (how a rank column reads:
//! `SMALLINT` on Postgres, `INTEGER` on SQLite), and its own `pages` (the
//! queues, read page by page in each dialect) and `dump` modules. What differs between
//! the dialects stays in the backend.

use sqlx::migrate::{Migration, MigrationType};
use sqlx::{ColumnIndex, Decode, Row, SqlStr, Type};

/// One embedded migration: `version`, `description` and its SQL text.
pub(super) fn migration(version: i64, description: &'static str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        description.into(),
        MigrationType::Simple,
        SqlStr::from_static(sql),
        false,
    )
}

/// A dump's rows: the first `width` columns of each, every one already
/// rendered as text by the backend's select.
pub(super) fn rows_as_text<R: Row>(
    rows: Vec<R>,
    width: usize,
) -> Result<Vec<Vec<String>>, sqlx::Error>
where
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut values = Vec::with_capacity(rows.len());
    for r in rows {
        let mut row = Vec::with_capacity(width);
        for i in 0..width {
            row.push(r.try_get::<String, _>(i)?);
        }
        values.push(row);
    }
    Ok(values)
}

/// `impl Store for $store { <the backend's own items> <the shared ones> }`.
/// The backend's own items are expanded inside the same block, so they see
/// its imports (`key_bytes`, `to_i64`, `StoreError`, …) rather than the
/// backend module's.
macro_rules! impl_store {
    ($store:ty; $($own:tt)*) => {
        // A block, so the shared methods' imports stay out of the backend's
        // module.
        const _: () = {
            use claudemesh_crypto::coord::{CoordId, CoordKind};
            use claudemesh_crypto::envelope::{MessageId, Priority};
            use claudemesh_crypto::log::LogEntry;
            use claudemesh_crypto::{Hash32, MeshId, PublicKey};
            use sqlx::Row;

            use $crate::store::api::Store;
            use $crate::store::codec::{
                entry_from_json, entry_to_json, key_bytes, key_from_bytes, mesh_from_bytes,
                member_state_from_parts, priority_from_rank, priority_rank, receipt_rank, watermark_from_parts, state_from_rank, state_rank,
                status_str, to_i64, to_u64,
            };
            use $crate::store::error::StoreError;
            use $crate::store::records::{
                AppendExtras, AppendOutcome, CancelOutcome, COORD_TOMBSTONE_WEIGHT, CoordRow,
                FanoutFacts, FanoutRow, ForgetOutcome, HeldMessage, HoldOutcome, MemberState,
                MessageStatus, NewCoordObject, PageLimit, PendingMessage, PutOutcome, ReceiptRow,
                LeaseOutcome, LeaseRow, LeaseTakeRequest, RetentionOutcome, StateOutcome, TableDump,
                TaskActOutcome, TaskActRequest, TaskRow,
                WatermarkRow,
            };
            use $crate::store::tasks;
            use claudemesh_crypto::receipt::ReceiptState;
            use claudemesh_proto::frames::DeliveryState;

            use $crate::store::sql;

            /// A held message as [`sql::DUE_HELD`] and [`sql::HELD_OF`]
            /// read it (a macro: each backend's row is its own type).
            macro_rules! held_from_row {
                ($r:expr) => {{
                    let r = $r;
                    let id: &[u8] = r.try_get(2)?;
                    Ok::<_, StoreError>(HeldMessage {
                        mesh: mesh_from_bytes(r.try_get(0)?)?,
                        sender_member: key_from_bytes(r.try_get(1)?)?,
                        id: MessageId(id.try_into().map_err(|_| {
                            StoreError::Corrupt(format!("held message id of {} bytes", id.len()))
                        })?),
                        target: r.try_get(3)?,
                        priority: priority_from_rank(i64::from(r.try_get::<Rank, _>(4)?))?,
                        envelope_json: r.try_get(5)?,
                        ttl_ms: r.try_get::<Option<i64>, _>(6)?.map(to_u64),
                        deliver_at_ms: to_u64(r.try_get(7)?),
                        created_at_ms: to_u64(r.try_get(8)?),
                        error: r.try_get(9)?,
                    })
                }};
            }

            #[async_trait::async_trait]
            impl Store for $store {
                $($own)*

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
                    mesh_id: MeshId,
                    now_ms: u64,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let inserted = sqlx::query(sql::INSERT_MESH)
                        .bind(&mesh_id.as_bytes()[..])
                        .bind(to_i64(now_ms))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if inserted == 0 {
                        return Ok(false);
                    }
                    sqlx::query(sql::INSERT_GENESIS)
                        .bind(&mesh_id.as_bytes()[..])
                        .bind(entry_to_json(genesis))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn load_log(
                    &self,
                    mesh: &MeshId,
                ) -> Result<Option<Vec<LogEntry>>, StoreError> {
                    let rows = sqlx::query(sql::LOAD_LOG)
                        .bind(&mesh.as_bytes()[..])
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
                    mesh: &MeshId,
                    expected_len: u64,
                    entries: &[(LogEntry, Hash32)],
                    extras: &AppendExtras,
                ) -> Result<AppendOutcome, StoreError> {
                    let Some((_, head)) = entries.last() else {
                        return Ok(AppendOutcome::Appended);
                    };
                    let new_len = expected_len + entries.len() as u64;
                    let mut tx = self.write_tx().await?;
                    // On Postgres the row lock this takes serializes
                    // concurrent appends: a second replica waits, then sees
                    // the new length and gets `Conflict`.
                    let moved = sqlx::query(sql::MOVE_LOG_HEAD)
                        .bind(to_i64(new_len))
                        .bind(&head.0[..])
                        .bind(&mesh.as_bytes()[..])
                        .bind(to_i64(expected_len))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if moved == 0 {
                        return Ok(AppendOutcome::Conflict);
                    }
                    Self::insert_log_entries(&mut tx, mesh, entries).await?;
                    if let Some((key, bundle)) = &extras.new_invite {
                        sqlx::query(sql::INSERT_INVITE)
                            .bind(key_bytes(key))
                            .bind(&mesh.as_bytes()[..])
                            .bind(&bundle[..])
                            .bind(to_i64($crate::now_ms()))
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
                ) -> Result<Option<(MeshId, Vec<u8>)>, StoreError> {
                    let row = sqlx::query(sql::INVITE_BUNDLE)
                        .bind(key_bytes(invite_key))
                        .fetch_optional(&self.pool)
                        .await?;
                    match row {
                        None => Ok(None),
                        Some(r) => Ok(Some((
                            mesh_from_bytes(r.try_get::<&[u8], _>(0)?)?,
                            r.try_get::<Vec<u8>, _>(1)?,
                        ))),
                    }
                }

                async fn pending(
                    &self,
                    mesh: &MeshId,
                    recipients: &[PublicKey],
                    after_seq: u64,
                    max_priority: Priority,
                    limit: PageLimit,
                ) -> Result<Vec<PendingMessage>, StoreError> {
                    pages::pending(&self.pool, mesh, recipients, after_seq, max_priority, limit)
                        .await
                }

                async fn fanout_pages(
                    &self,
                    mesh: &MeshId,
                    member: &PublicKey,
                    targets: &[(String, u64)],
                    after_seq: u64,
                    limit: PageLimit,
                ) -> Result<Vec<FanoutRow>, StoreError> {
                    pages::fanout_pages(&self.pool, mesh, member, targets, after_seq, limit).await
                }

                async fn advance_fanout_cursor(
                    &self,
                    mesh: &MeshId,
                    member: &PublicKey,
                    target: &str,
                    seq: u64,
                ) -> Result<(), StoreError> {
                    sqlx::query(sql::ADVANCE_FANOUT_CURSOR)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(member))
                        .bind(target)
                        .bind(to_i64(seq))
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn fanout_history(
                    &self,
                    mesh: &MeshId,
                    target: &str,
                    before_seq: u64,
                    limit: PageLimit,
                ) -> Result<Vec<PendingMessage>, StoreError> {
                    let rows = sqlx::query(sql::FANOUT_HISTORY)
                        .bind(&mesh.as_bytes()[..])
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
                                tseq: r.try_get::<Option<i64>, _>(3)?.map(to_u64),
                                deadline_ms: r.try_get::<Option<i64>, _>(4)?.map(to_u64),
                            })
                        })
                        .collect()
                }

                async fn message_status(
                    &self,
                    mesh: &MeshId,
                    sender_member: &PublicKey,
                    id: &MessageId,
                ) -> Result<Option<MessageStatus>, StoreError> {
                    let facts = sqlx::query(sql::FANOUT_FACTS)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(sender_member))
                        .bind(&id.0[..])
                        .fetch_optional(&self.pool)
                        .await?;
                    let fanout = match facts {
                        Some(f) => Some(FanoutFacts {
                            target: f.try_get(0)?,
                            at_len: to_u64(f.try_get(1)?),
                            expired: f.try_get(2)?,
                            tseq: f.try_get::<Option<i64>, _>(3)?.map(to_u64),
                        }),
                        None => None,
                    };
                    // A fan-out message's per-recipient state is its
                    // receipts; a direct one's is its delivery rows.
                    let statement = if fanout.is_some() {
                        sql::MESSAGE_RECEIPTS
                    } else {
                        sql::MESSAGE_DELIVERIES
                    };
                    let rows = sqlx::query(statement)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(sender_member))
                        .bind(&id.0[..])
                        .fetch_all(&self.pool)
                        .await?;
                    let Some(first) = rows.first() else {
                        return Ok(None);
                    };
                    let seq: i64 = first.try_get(0)?;
                    let deadline_ms = first.try_get::<Option<i64>, _>(3)?.map(to_u64);
                    let mut recipients = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let recipient: Option<&[u8]> = r.try_get(1)?;
                        let state: Option<Rank> = r.try_get(2)?;
                        if let (Some(recipient), Some(state)) = (recipient, state) {
                            recipients.push((key_from_bytes(recipient)?, state_from_rank(state)?));
                        }
                    }
                    let docs = sqlx::query(sql::MESSAGE_RECEIPT_DOCS)
                        .bind(seq)
                        .fetch_all(&self.pool)
                        .await?;
                    let mut receipts = Vec::with_capacity(docs.len());
                    for r in docs {
                        receipts.push((key_from_bytes(r.try_get::<&[u8], _>(0)?)?, r.try_get(1)?));
                    }
                    Ok(Some(MessageStatus {
                        seq: to_u64(seq),
                        recipients,
                        fanout,
                        deadline_ms,
                        receipts,
                    }))
                }

                async fn write_receipts(&self, rows: &[ReceiptRow]) -> Result<(), StoreError> {
                    if rows.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.write_tx().await?;
                    for r in rows {
                        sqlx::query(sql::INSERT_RECEIPT)
                            .bind(to_i64(r.seq))
                            .bind(key_bytes(&r.member))
                            .bind(Rank::from(receipt_rank(r.state)))
                            .bind(to_i64(r.at_ms))
                            .bind(&r.doc)
                            .bind(&r.mesh.as_bytes()[..])
                            .bind(key_bytes(&r.sender))
                            .bind(&r.id.0[..])
                            .bind(&r.target)
                            .bind(key_bytes(&r.session))
                            .execute(&mut *tx)
                            .await?;
                        let ack = match r.state {
                            ReceiptState::Delivered => DeliveryState::Delivered,
                            ReceiptState::Shown => DeliveryState::Read,
                            ReceiptState::Answered => continue,
                        };
                        if r.direct {
                            sqlx::query(sql::RECEIPT_DELIVERY)
                                .bind(Rank::try_from(state_rank(ack)).unwrap_or(0))
                                .bind(to_i64(r.at_ms))
                                .bind(to_i64(r.seq))
                                .bind(&r.mesh.as_bytes()[..])
                                .bind(key_bytes(&r.member))
                                .bind(key_bytes(&r.session))
                                .bind(key_bytes(&r.sender))
                                .bind(&r.id.0[..])
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn write_watermarks(&self, rows: &[WatermarkRow]) -> Result<(), StoreError> {
                    // One multi-row upsert per chunk: a flush carries a row per
                    // member that moved (a thousand for a busy topic), and a
                    // statement each would hold the writer for that long. A
                    // statement may not touch a row twice: keep the furthest
                    // of each key first.
                    type Key<'a> = (&'a [u8], &'a [u8], &'a str, u8);
                    let mut furthest: std::collections::BTreeMap<Key<'_>, &WatermarkRow> =
                        std::collections::BTreeMap::new();
                    for w in rows {
                        let key = (
                            &w.mesh.as_bytes()[..],
                            key_bytes(&w.member),
                            w.target.as_str(),
                            receipt_rank(w.state),
                        );
                        let keep = furthest
                            .get(&key)
                            .is_none_or(|k| (w.upto, w.at_ms) > (k.upto, k.at_ms));
                        if keep {
                            furthest.insert(key, w);
                        }
                    }
                    let rows: Vec<&WatermarkRow> = furthest.into_values().collect();
                    if rows.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.write_tx().await?;
                    for chunk in rows.chunks(sql::WATERMARKS_PER_STATEMENT) {
                        let statement = sql::upsert_watermarks(chunk.len());
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(statement));
                        for w in chunk {
                            q = q
                                .bind(&w.mesh.as_bytes()[..])
                                .bind(key_bytes(&w.member))
                                .bind(&w.target)
                                .bind(Rank::from(receipt_rank(w.state)))
                                .bind(to_i64(w.upto))
                                .bind(to_i64(w.at_ms))
                                .bind(&w.doc);
                        }
                        q.execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn member_watermarks(
                    &self,
                    mesh: &MeshId,
                    member: &PublicKey,
                ) -> Result<Vec<WatermarkRow>, StoreError> {
                    let rows = sqlx::query(sql::MEMBER_WATERMARKS)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(member))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter()
                        .map(|r| {
                            watermark_from_parts(
                                mesh,
                                r.try_get::<&[u8], _>(0)?,
                                r.try_get(1)?,
                                i64::from(r.try_get::<Rank, _>(2)?),
                                r.try_get(3)?,
                                r.try_get(4)?,
                                r.try_get(5)?,
                            )
                        })
                        .collect()
                }

                async fn target_watermarks(
                    &self,
                    mesh: &MeshId,
                    target: &str,
                    min_upto: u64,
                ) -> Result<Vec<WatermarkRow>, StoreError> {
                    let rows = sqlx::query(sql::TARGET_WATERMARKS)
                        .bind(&mesh.as_bytes()[..])
                        .bind(target)
                        .bind(to_i64(min_upto))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter()
                        .map(|r| {
                            watermark_from_parts(
                                mesh,
                                r.try_get::<&[u8], _>(0)?,
                                r.try_get(1)?,
                                i64::from(r.try_get::<Rank, _>(2)?),
                                r.try_get(3)?,
                                r.try_get(4)?,
                                r.try_get(5)?,
                            )
                        })
                        .collect()
                }

                async fn record_session(
                    &self,
                    mesh: &MeshId,
                    session: &PublicKey,
                    member: &PublicKey,
                    now_ms: u64,
                ) -> Result<(), StoreError> {
                    sqlx::query(sql::RECORD_SESSION)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(session))
                        .bind(key_bytes(member))
                        .bind(to_i64(now_ms))
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn session_member(
                    &self,
                    mesh: &MeshId,
                    session: &PublicKey,
                ) -> Result<Option<PublicKey>, StoreError> {
                    let row = sqlx::query(sql::SESSION_MEMBER)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(session))
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(|r| key_from_bytes(r.try_get::<&[u8], _>(0)?))
                        .transpose()
                }

                async fn save_member_state(
                    &self,
                    mesh: &MeshId,
                    member: &PublicKey,
                    state: &MemberState,
                ) -> Result<(), StoreError> {
                    let summary = state
                        .summary
                        .as_ref()
                        .map(|s| serde_json::to_string(s).unwrap_or_default());
                    sqlx::query(sql::SAVE_MEMBER_STATE)
                        .bind(&mesh.as_bytes()[..])
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
                    mesh: &MeshId,
                ) -> Result<Vec<(PublicKey, MemberState)>, StoreError> {
                    let rows = sqlx::query(sql::MEMBER_STATES)
                        .bind(&mesh.as_bytes()[..])
                        .fetch_all(&self.pool)
                        .await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        out.push(member_state_from_parts(
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
                    mesh: &MeshId,
                    member: &PublicKey,
                    version: u64,
                    doc: &str,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query(sql::SAVE_GRANTS)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(member))
                        .bind(to_i64(version))
                        .bind(doc)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn load_grants(
                    &self,
                    mesh: &MeshId,
                ) -> Result<Vec<(PublicKey, String)>, StoreError> {
                    let rows = sqlx::query(sql::LOAD_GRANTS)
                        .bind(&mesh.as_bytes()[..])
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
                    sqlx::query(sql::PURGE_FAILED_HELD)
                        .bind(to_i64(purge_before_ms))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(RetentionOutcome { expired, purged })
                }

                async fn expire_due(&self, now_ms: u64) -> Result<u64, StoreError> {
                    // Asked every second: look first (an index probe), and
                    // take the write lock only when something is due.
                    let due: bool = sqlx::query_scalar(sql::ANY_DUE)
                        .bind(to_i64(now_ms))
                        .fetch_one(&self.pool)
                        .await?;
                    if !due {
                        return Ok(0);
                    }
                    let mut tx = self.write_tx().await?;
                    sqlx::query(sql::EXPIRE_DUE_DELIVERIES)
                        .bind(to_i64(now_ms))
                        .execute(&mut *tx)
                        .await?;
                    let expired = sqlx::query(sql::EXPIRE_DUE_MESSAGES)
                        .bind(to_i64(now_ms))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    Ok(expired)
                }

                async fn hold_message(
                    &self,
                    held: &HeldMessage,
                    max: u64,
                ) -> Result<HoldOutcome, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let key = (
                        &held.mesh.as_bytes()[..],
                        key_bytes(&held.sender_member),
                        &held.id.0[..],
                    );
                    // A resend after its time came: the stored message answers.
                    if let Some(r) = sqlx::query(sql::STORED_SEQ)
                        .bind(key.0)
                        .bind(key.1)
                        .bind(key.2)
                        .fetch_optional(&mut *tx)
                        .await?
                    {
                        return Ok(HoldOutcome::AlreadySent {
                            seq: to_u64(r.try_get(0)?),
                            tseq: r.try_get::<Option<i64>, _>(1)?.map(to_u64),
                        });
                    }
                    let inserted = sqlx::query(sql::HOLD_MESSAGE)
                        .bind(key.0)
                        .bind(key.1)
                        .bind(key.2)
                        .bind(&held.target)
                        .bind(Rank::try_from(priority_rank(held.priority)).unwrap_or(0))
                        .bind(&held.envelope_json)
                        .bind(i64::try_from(held.envelope_json.len()).unwrap_or(i64::MAX))
                        .bind(held.ttl_ms.map(to_i64))
                        .bind(to_i64(held.deliver_at_ms))
                        .bind(to_i64(held.created_at_ms))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if inserted == 0 {
                        let r = sqlx::query(sql::HELD_AT)
                            .bind(key.0)
                            .bind(key.1)
                            .bind(key.2)
                            .fetch_one(&mut *tx)
                            .await?;
                        let state = i64::from(r.try_get::<Rank, _>(1)?);
                        if state == 2 {
                            return Ok(HoldOutcome::Cancelled);
                        }
                        return Ok(HoldOutcome::Held {
                            deliver_at_ms: to_u64(r.try_get(0)?),
                            duplicate: true,
                        });
                    }
                    // Counted after the insert, in the same transaction. On
                    // SQLite (one writer) two holds cannot both take the last
                    // place; on Postgres two concurrent ones each see only
                    // their own insert, so the cap may be passed by as many
                    // holds as race: a resource bound, not a security one.
                    let held_now: i64 = sqlx::query_scalar(sql::COUNT_HELD)
                        .bind(key.0)
                        .bind(key.1)
                        .fetch_one(&mut *tx)
                        .await?;
                    if to_u64(held_now) > max {
                        tx.rollback().await?;
                        return Ok(HoldOutcome::TooMany);
                    }
                    tx.commit().await?;
                    Ok(HoldOutcome::Held {
                        deliver_at_ms: held.deliver_at_ms,
                        duplicate: false,
                    })
                }

                async fn due_held(&self, now_ms: u64, limit: u32) -> Result<Vec<HeldMessage>, StoreError> {
                    // Asked every second: an index probe first.
                    let any: bool = sqlx::query_scalar(sql::ANY_HELD_DUE)
                        .bind(to_i64(now_ms))
                        .fetch_one(&self.pool)
                        .await?;
                    if !any {
                        return Ok(Vec::new());
                    }
                    let rows = sqlx::query(sql::DUE_HELD)
                        .bind(to_i64(now_ms))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(|r| held_from_row!(r)).collect()
                }

                async fn held_of(
                    &self,
                    mesh: &MeshId,
                    member: &PublicKey,
                    limit: u32,
                ) -> Result<Vec<HeldMessage>, StoreError> {
                    let rows = sqlx::query(sql::HELD_OF)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(member))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(|r| held_from_row!(r)).collect()
                }

                async fn cancel_held(
                    &self,
                    mesh: &MeshId,
                    member: &PublicKey,
                    id: &MessageId,
                ) -> Result<CancelOutcome, StoreError> {
                    let mut tx = self.write_tx().await?;
                    // Stored already (fired, or a failed one sent again at
                    // once): too late, whatever row is left.
                    let stored = sqlx::query(sql::STORED_SEQ)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(member))
                        .bind(&id.0[..])
                        .fetch_optional(&mut *tx)
                        .await?;
                    let outcome = if let Some(r) = stored {
                        sqlx::query(sql::FORGET_HELD)
                            .bind(&mesh.as_bytes()[..])
                            .bind(key_bytes(member))
                            .bind(&id.0[..])
                            .execute(&mut *tx)
                            .await?;
                        CancelOutcome::AlreadySent {
                            seq: to_u64(r.try_get(0)?),
                        }
                    } else if sqlx::query(sql::CANCEL_HELD)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(member))
                        .bind(&id.0[..])
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some()
                    {
                        CancelOutcome::Cancelled
                    } else {
                        // Never held, or cancelled before.
                        CancelOutcome::NotFound
                    };
                    tx.commit().await?;
                    Ok(outcome)
                }

                async fn fail_held(
                    &self,
                    mesh: &MeshId,
                    member: &PublicKey,
                    id: &MessageId,
                    error: &str,
                ) -> Result<(), StoreError> {
                    let mut tx = self.write_tx().await?;
                    sqlx::query(sql::FAIL_HELD)
                        .bind(&mesh.as_bytes()[..])
                        .bind(key_bytes(member))
                        .bind(&id.0[..])
                        .bind(error)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn coord_put(
                    &self,
                    o: &NewCoordObject,
                    max_per_member: u64,
                ) -> Result<PutOutcome, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let mesh = &o.mesh.as_bytes()[..];
                    // First, the mesh's feed position: its row lock is held
                    // to the commit, so what follows reads every write of
                    // this mesh committed before (each statement of a READ
                    // COMMITTED transaction takes a new snapshot) and none
                    // can commit in between. Every outcome but `Stored`
                    // rolls back, so refused writes leave no hole.
                    let cseq: i64 = sqlx::query_scalar(sql::COORD_NEXT_CSEQ)
                        .bind(mesh)
                        .fetch_one(&mut *tx)
                        .await?;
                    let stored = sqlx::query(sql::COORD_OBJECT)
                        .bind(mesh)
                        .bind(o.kind.as_str())
                        .bind(&o.id.0[..])
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(r) = stored {
                        let json: Option<String> = r.try_get(0)?;
                        let at = to_u64(r.try_get(1)?);
                        tx.rollback().await?;
                        return Ok(match json {
                            None => PutOutcome::Forgotten,
                            Some(j) if j == o.object_json => PutOutcome::Duplicate { cseq: at },
                            Some(_) => PutOutcome::Conflict,
                        });
                    }
                    let held: i64 = sqlx::query_scalar(sql::COORD_COUNT_AUTHOR)
                        .bind(mesh)
                        .bind(key_bytes(&o.author_member))
                        .fetch_one(&mut *tx)
                        .await?;
                    if to_u64(held) >= max_per_member {
                        tx.rollback().await?;
                        return Ok(PutOutcome::TooMany);
                    }
                    sqlx::query(sql::COORD_INSERT)
                        .bind(mesh)
                        .bind(o.kind.as_str())
                        .bind(&o.id.0[..])
                        .bind(key_bytes(&o.author_member))
                        .bind(to_i64(o.epoch))
                        .bind(cseq)
                        .bind(&o.object_json)
                        .bind(i64::try_from(o.object_json.len()).unwrap_or(i64::MAX))
                        .bind(to_i64(o.now_ms))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(PutOutcome::Stored { cseq: to_u64(cseq) })
                }

                async fn coord_author(
                    &self,
                    mesh: &MeshId,
                    kind: CoordKind,
                    id: &CoordId,
                ) -> Result<Option<(PublicKey, bool)>, StoreError> {
                    let row = sqlx::query(sql::COORD_OBJECT)
                        .bind(&mesh.as_bytes()[..])
                        .bind(kind.as_str())
                        .bind(&id.0[..])
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(|r| {
                        Ok((key_from_bytes(r.try_get::<&[u8], _>(2)?)?, r.try_get(3)?))
                    })
                    .transpose()
                }

                async fn coord_object(
                    &self,
                    mesh: &MeshId,
                    kind: CoordKind,
                    id: &CoordId,
                ) -> Result<Option<String>, StoreError> {
                    let row = sqlx::query(sql::COORD_OBJECT)
                        .bind(&mesh.as_bytes()[..])
                        .bind(kind.as_str())
                        .bind(&id.0[..])
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(match row {
                        Some(r) => r.try_get::<Option<String>, _>(0)?,
                        None => None,
                    })
                }

                async fn coord_forget(
                    &self,
                    mesh: &MeshId,
                    kind: CoordKind,
                    id: &CoordId,
                    now_ms: u64,
                ) -> Result<ForgetOutcome, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let key = (&mesh.as_bytes()[..], kind.as_str(), &id.0[..]);
                    // The feed position first, as in `coord_put`.
                    let cseq: i64 = sqlx::query_scalar(sql::COORD_NEXT_CSEQ)
                        .bind(key.0)
                        .fetch_one(&mut *tx)
                        .await?;
                    let forgotten = sqlx::query(sql::COORD_FORGET)
                        .bind(key.0)
                        .bind(key.1)
                        .bind(key.2)
                        .bind(cseq)
                        .bind(to_i64(now_ms))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if forgotten > 0 {
                        tx.commit().await?;
                        return Ok(ForgetOutcome::Forgotten { cseq: to_u64(cseq) });
                    }
                    let before = sqlx::query(sql::COORD_OBJECT)
                        .bind(key.0)
                        .bind(key.1)
                        .bind(key.2)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.rollback().await?;
                    Ok(match before {
                        Some(r) => ForgetOutcome::AlreadyForgotten {
                            cseq: to_u64(r.try_get(1)?),
                        },
                        None => ForgetOutcome::NotFound,
                    })
                }

                async fn coord_changes(
                    &self,
                    mesh: &MeshId,
                    kind: CoordKind,
                    after: u64,
                    max_bytes: u64,
                ) -> Result<(Vec<CoordRow>, bool), StoreError> {
                    // Every row weighs at least a tombstone, so no page
                    // holds more rows than this: the window runs over a
                    // bounded prefix, not the whole feed.
                    let max_bytes = max_bytes.max(1);
                    let rows_cap = max_bytes / COORD_TOMBSTONE_WEIGHT + 1;
                    let rows = sqlx::query(sql::COORD_CHANGES)
                        .bind(&mesh.as_bytes()[..])
                        .bind(kind.as_str())
                        .bind(to_i64(after))
                        .bind(to_i64(max_bytes))
                        .bind(to_i64(COORD_TOMBSTONE_WEIGHT))
                        .bind(to_i64(rows_cap))
                        .fetch_all(&self.pool)
                        .await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        let id: &[u8] = r.try_get(1)?;
                        out.push(CoordRow {
                            cseq: to_u64(r.try_get(0)?),
                            id: CoordId(id.try_into().map_err(|_| {
                                StoreError::Corrupt(format!(
                                    "coordination object id of {} bytes",
                                    id.len()
                                ))
                            })?),
                            object_json: r.try_get(2)?,
                            act_json: r.try_get(3)?,
                            expires_at_ms: r.try_get::<Option<i64>, _>(4)?.map(to_u64),
                        });
                    }
                    // An empty page says no more: a change committed
                    // between the two reads is the next sync's (a "more"
                    // that does not move the position would loop).
                    let Some(last) = out.last().map(|r| r.cseq) else {
                        return Ok((out, false));
                    };
                    let more: bool = sqlx::query_scalar(sql::COORD_ANY_AFTER)
                        .bind(&mesh.as_bytes()[..])
                        .bind(kind.as_str())
                        .bind(to_i64(last))
                        .fetch_one(&self.pool)
                        .await?;
                    Ok((out, more))
                }

                async fn task_act(
                    &self,
                    act: &TaskActRequest,
                ) -> Result<TaskActOutcome, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let mesh = &act.mesh.as_bytes()[..];
                    // The feed position first, as in `coord_put`: its lock
                    // makes the read below and the update one step, so of
                    // two acts on one version only the first applies.
                    let cseq: i64 = sqlx::query_scalar(sql::COORD_NEXT_CSEQ)
                        .bind(mesh)
                        .fetch_one(&mut *tx)
                        .await?;
                    let Some(r) = sqlx::query(sql::COORD_TASK)
                        .bind(mesh)
                        .bind(&act.id.0[..])
                        .fetch_optional(&mut *tx)
                        .await?
                    else {
                        tx.rollback().await?;
                        return Ok(TaskActOutcome::NotFound);
                    };
                    if r.try_get::<bool, _>(4)? {
                        tx.rollback().await?;
                        return Ok(TaskActOutcome::NotFound);
                    }
                    let rank: i64 = r.try_get(1)?;
                    let row = TaskRow {
                        version: to_u64(r.try_get(0)?),
                        phase: tasks::phase_from_rank(rank).ok_or_else(|| {
                            StoreError::Corrupt(format!("task phase {rank}"))
                        })?,
                        holder: r
                            .try_get::<Option<&[u8]>, _>(2)?
                            .map(key_from_bytes)
                            .transpose()?,
                        creator: key_from_bytes(r.try_get(3)?)?,
                        act_json: r.try_get(5)?,
                        cseq: to_u64(r.try_get(6)?),
                    };
                    let mut next = match tasks::apply(row, act) {
                        TaskActOutcome::Applied(next) => next,
                        other => {
                            tx.rollback().await?;
                            return Ok(other);
                        }
                    };
                    next.cseq = to_u64(cseq);
                    sqlx::query(sql::COORD_TASK_ACT)
                        .bind(mesh)
                        .bind(&act.id.0[..])
                        .bind(to_i64(next.version))
                        .bind(tasks::phase_rank(next.phase))
                        .bind(next.holder.as_ref().map(key_bytes))
                        .bind(&act.act_json)
                        .bind(cseq)
                        .bind(to_i64(act.now_ms))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(TaskActOutcome::Applied(next))
                }

                async fn state_put(
                    &self,
                    o: &NewCoordObject,
                    version: u64,
                    max_per_member: u64,
                ) -> Result<StateOutcome, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let mesh = &o.mesh.as_bytes()[..];
                    // The feed position first, as in `coord_put`.
                    let cseq: i64 = sqlx::query_scalar(sql::COORD_NEXT_CSEQ)
                        .bind(mesh)
                        .fetch_one(&mut *tx)
                        .await?;
                    let now = sqlx::query(sql::COORD_STATE)
                        .bind(mesh)
                        .bind(&o.id.0[..])
                        .fetch_optional(&mut *tx)
                        .await?;
                    let (at, json, at_cseq) = match &now {
                        Some(r) => (
                            to_u64(r.try_get(0)?),
                            r.try_get::<Option<String>, _>(1)?,
                            to_u64(r.try_get(2)?),
                        ),
                        None => (0, None, 0),
                    };
                    if json.as_deref() == Some(o.object_json.as_str()) {
                        tx.rollback().await?;
                        return Ok(StateOutcome::Stored { cseq: at_cseq });
                    }
                    if at.checked_add(1) != Some(version) {
                        tx.rollback().await?;
                        return Ok(StateOutcome::Moved {
                            version: at,
                            object_json: json,
                            cseq: at_cseq,
                        });
                    }
                    let size = i64::try_from(o.object_json.len()).unwrap_or(i64::MAX);
                    if now.is_some() {
                        sqlx::query(sql::COORD_STATE_UPDATE)
                            .bind(mesh)
                            .bind(&o.id.0[..])
                            .bind(&o.object_json)
                            .bind(key_bytes(&o.author_member))
                            .bind(to_i64(o.epoch))
                            .bind(cseq)
                            .bind(size)
                            .bind(to_i64(o.now_ms))
                            .bind(to_i64(version))
                            .execute(&mut *tx)
                            .await?;
                    } else {
                        let held: i64 = sqlx::query_scalar(sql::COORD_COUNT_AUTHOR)
                            .bind(mesh)
                            .bind(key_bytes(&o.author_member))
                            .fetch_one(&mut *tx)
                            .await?;
                        if to_u64(held) >= max_per_member {
                            tx.rollback().await?;
                            return Ok(StateOutcome::TooMany);
                        }
                        sqlx::query(sql::COORD_INSERT)
                            .bind(mesh)
                            .bind(o.kind.as_str())
                            .bind(&o.id.0[..])
                            .bind(key_bytes(&o.author_member))
                            .bind(to_i64(o.epoch))
                            .bind(cseq)
                            .bind(&o.object_json)
                            .bind(size)
                            .bind(to_i64(o.now_ms))
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(StateOutcome::Stored { cseq: to_u64(cseq) })
                }

                async fn lease_take(
                    &self,
                    l: &LeaseTakeRequest,
                ) -> Result<LeaseOutcome, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let o = &l.new;
                    let mesh = &o.mesh.as_bytes()[..];
                    let now = to_i64(o.now_ms);
                    // The feed position first, as in `coord_put`: the
                    // conflict check and the grant below are one step.
                    let cseq: i64 = sqlx::query_scalar(sql::COORD_NEXT_CSEQ)
                        .bind(mesh)
                        .fetch_one(&mut *tx)
                        .await?;
                    if sqlx::query(sql::COORD_OBJECT)
                        .bind(mesh)
                        .bind(o.kind.as_str())
                        .bind(&o.id.0[..])
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some()
                    {
                        tx.rollback().await?;
                        return Ok(LeaseOutcome::Exists);
                    }
                    // Leases past their end are released first, each a
                    // tombstone at its own position, so mirrors drop them.
                    let expired: Vec<Vec<u8>> = sqlx::query_scalar(sql::LEASES_EXPIRED)
                        .bind(mesh)
                        .bind(now)
                        .bind(64_i64)
                        .fetch_all(&mut *tx)
                        .await?;
                    for id in &expired {
                        let at: i64 = sqlx::query_scalar(sql::COORD_NEXT_CSEQ)
                            .bind(mesh)
                            .fetch_one(&mut *tx)
                            .await?;
                        sqlx::query(sql::COORD_FORGET)
                            .bind(mesh)
                            .bind(o.kind.as_str())
                            .bind(&id[..])
                            .bind(at)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let probe: std::collections::HashSet<[u8; 16]> =
                        l.probe.iter().map(|t| t.0).collect();
                    let live = sqlx::query(sql::LEASES_LIVE)
                        .bind(mesh)
                        .bind(now)
                        .fetch_all(&mut *tx)
                        .await?;
                    let mut conflicts = Vec::new();
                    let mut conflict_bytes = 0usize;
                    for r in live {
                        let holder = key_from_bytes(r.try_get(1)?)?;
                        if l.departed.contains(&holder) {
                            // A removed member's lease: released now, as
                            // an expired one is.
                            let at: i64 = sqlx::query_scalar(sql::COORD_NEXT_CSEQ)
                                .bind(mesh)
                                .fetch_one(&mut *tx)
                                .await?;
                            sqlx::query(sql::COORD_FORGET)
                                .bind(mesh)
                                .bind(o.kind.as_str())
                                .bind(r.try_get::<&[u8], _>(0)?)
                                .bind(at)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                            continue;
                        }
                        let session = key_from_bytes(
                            r.try_get::<Option<&[u8]>, _>(2)?.unwrap_or_default(),
                        )?;
                        let exclusive = r.try_get::<i64, _>(3)? != 0;
                        if session == l.session || !(exclusive || l.exclusive) {
                            continue;
                        }
                        let tags: String = r.try_get::<Option<String>, _>(6)?.unwrap_or_default();
                        let meets = tags.as_bytes().chunks(32).any(|hex_tag| {
                            let mut t = [0u8; 16];
                            hex::decode_to_slice(hex_tag, &mut t).is_ok() && probe.contains(&t)
                        });
                        if !meets {
                            continue;
                        }
                        let id: &[u8] = r.try_get(0)?;
                        conflicts.push(LeaseRow {
                            id: CoordId(id.try_into().map_err(|_| {
                                StoreError::Corrupt(format!("lease id of {} bytes", id.len()))
                            })?),
                            holder,
                            session,
                            exclusive,
                            expires_at_ms: to_u64(r.try_get::<Option<i64>, _>(4)?.unwrap_or(0)),
                            object_json: r.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
                        });
                        conflict_bytes += conflicts.last().map_or(0, |c: &LeaseRow| c.object_json.len());
                        if conflicts.len() >= l.max_conflicts || conflict_bytes >= l.max_conflict_bytes {
                            break;
                        }
                    }
                    if !conflicts.is_empty() {
                        tx.rollback().await?;
                        return Ok(LeaseOutcome::Conflict(conflicts));
                    }
                    let held: i64 = sqlx::query_scalar(sql::LEASES_OF)
                        .bind(mesh)
                        .bind(key_bytes(&o.author_member))
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                    if to_u64(held) >= l.max_per_member {
                        tx.rollback().await?;
                        return Ok(LeaseOutcome::TooMany);
                    }
                    sqlx::query(sql::COORD_INSERT)
                        .bind(mesh)
                        .bind(o.kind.as_str())
                        .bind(&o.id.0[..])
                        .bind(key_bytes(&o.author_member))
                        .bind(to_i64(o.epoch))
                        .bind(cseq)
                        .bind(&o.object_json)
                        .bind(i64::try_from(o.object_json.len()).unwrap_or(i64::MAX))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let tags: String = l.tags.iter().map(|t| hex::encode(t.0)).collect();
                    sqlx::query(sql::LEASE_GRANT)
                        .bind(mesh)
                        .bind(&o.id.0[..])
                        .bind(key_bytes(&l.session))
                        .bind(i64::from(l.exclusive))
                        .bind(to_i64(l.expires_at_ms))
                        .bind(tags)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(LeaseOutcome::Granted { cseq: to_u64(cseq) })
                }

                async fn lease_renew(
                    &self,
                    mesh: &MeshId,
                    member: &PublicKey,
                    ids: &[CoordId],
                    now_ms: u64,
                    expires_at_ms: u64,
                ) -> Result<Vec<CoordId>, StoreError> {
                    let mut tx = self.write_tx().await?;
                    let m = &mesh.as_bytes()[..];
                    let mut renewed = Vec::new();
                    for id in ids {
                        let at: i64 = sqlx::query_scalar(sql::COORD_NEXT_CSEQ)
                            .bind(m)
                            .fetch_one(&mut *tx)
                            .await?;
                        let n = sqlx::query(sql::LEASE_RENEW)
                            .bind(m)
                            .bind(&id.0[..])
                            .bind(key_bytes(member))
                            .bind(to_i64(now_ms))
                            .bind(to_i64(expires_at_ms))
                            .bind(at)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        if n > 0 {
                            renewed.push(*id);
                        }
                    }
                    tx.commit().await?;
                    Ok(renewed)
                }

                async fn coord_ring_put(
                    &self,
                    mesh: &MeshId,
                    scope: &str,
                    epoch: u64,
                    signer: &PublicKey,
                    link_json: &str,
                ) -> Result<bool, StoreError> {
                    let stored = sqlx::query(sql::COORD_RING_PUT)
                        .bind(&mesh.as_bytes()[..])
                        .bind(scope)
                        .bind(to_i64(epoch))
                        .bind(key_bytes(signer))
                        .bind(link_json)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    Ok(stored == 0)
                }

                async fn coord_ring(
                    &self,
                    mesh: &MeshId,
                    after: u64,
                ) -> Result<Vec<(u64, String)>, StoreError> {
                    let rows: Vec<(i64, String)> = sqlx::query_as(sql::COORD_RING)
                        .bind(&mesh.as_bytes()[..])
                        .bind(to_i64(after))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(epoch, link)| (to_u64(epoch), link))
                        .collect())
                }

                async fn dump(&self) -> Result<Vec<TableDump>, StoreError> {
                    dump::dump(&self.pool).await
                }
            }

        };
    };
}

pub(super) use impl_store;
