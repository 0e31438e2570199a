//! The broker's durable state behind one trait, [`Store`], with two
//! backends: embedded SQLite (the default, one node) and Postgres
//! (production, several replicas). Both keep exactly the same tables (see
//! `migrations/`), hold only public keys, signed log entries, ciphertext and
//! routing metadata (TM1), and use parameterized SQL only (TM10).
//!
//! # Layout
//!
//! - `mod.rs`: this map, [`open`] (a backend by its URL) and the re-exports.
//! - `api.rs`: the [`Store`] trait, one transaction per method.
//! - `records.rs`: the rows that cross it ([`NewMessage`], [`AckOp`],
//!   [`PageLimit`], …).
//! - `error.rs`: [`StoreError`].
//! - `codec.rs`: how values are stored (ranks, keys, JSON), for both backends.
//! - `sql.rs`: the statements both dialects run word for word.
//! - `shared.rs`: the Rust around them both backends run word for word, once:
//!   a macro that writes each backend's `impl Store` with the methods whose
//!   bodies are the same (two different pool types, so a macro rather than
//!   generics), the embedded migration and the dump's rows.
//! - `replicas.rs`: the [`replicas::ReplicaStore`] trait, what several brokers
//!   sharing one database need (Postgres only).
//! - `sqlite/`: the SQLite backend (open and migrate, message batches,
//!   queues and pages, the dump).
//! - `postgres/`: the Postgres backend (the same nouns, plus the
//!   migration lock and `replicas.rs`, its [`replicas::ReplicaStore`]).
//! - `conformance.rs`: every behaviour of the trait, run against both.

use std::sync::Arc;
use std::time::Duration;

use crate::db_url::redact_url;

mod api;
mod codec;
#[cfg(test)]
mod conformance;
mod error;
pub mod postgres;
mod records;
pub mod replicas;
mod shared;
mod sql;
pub mod sqlite;
mod tasks;

pub use api::Store;
pub(crate) use codec::priority_rank;
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use records::{
    AckOp, AppendExtras, AppendOutcome, CancelOutcome, CoordRow, FanoutFacts, FanoutRow,
    ForgetOutcome, HeldMessage, HoldOutcome, InsertOutcome, LeaseOutcome, LeaseRow,
    LeaseTakeRequest, MemberState, MessageStatus, NewCoordObject, NewMessage, PageLimit,
    PendingMessage, PutOutcome, ReceiptRow, RetentionOutcome, SessionRecord, StateOutcome,
    TableDump, TaskActOutcome, TaskActRequest, TaskRow, WatermarkRow, fanout_weight, first_of,
};
pub use sqlite::SqliteStore;

/// Opens the store a database URL names, applying migrations first.
pub async fn open(
    url: &str,
    migration_lock_timeout: Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresStore::open(url, migration_lock_timeout).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}
