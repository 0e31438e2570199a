//! [`StoreError`]: why a store operation failed, one variant per thing a
//! caller (or an operator reading the log) can act on.

use std::time::Duration;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed to apply.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another broker held the migration lock for too long.
    #[error("timed out after {0:?} waiting for the migration lock (another broker is migrating?)")]
    LockTimeout(Duration),
    /// A stored row could not be read back (a bug or tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database URL names a backend this broker does not have.
    #[error("unsupported database URL (use sqlite://<file> or postgres://…): {0}")]
    UnsupportedUrl(String),
}
