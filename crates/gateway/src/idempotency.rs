//! `Idempotency-Key` on a POST that sends: the first request with a key
//! gets a fresh message id, stored with a hash of what it asked; a retry
//! with the same key gets the same id, so the message is sealed and sent
//! again under it and the outbox and the broker keep one copy (a resend
//! of a stored id is answered as a duplicate). The same key with another
//! request is refused rather than guessed at. Keys are per API key and
//! kept for a day (`idempotency_keys` in `state.db`).

use claudemesh_crypto::envelope::MessageId;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

/// How long a key is remembered.
pub const KEEP_MS: u64 = 24 * 3600 * 1000;
/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

/// What a key stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// First use: send under this id.
    New(MessageId),
    /// A retry of the same request: send again under the same id.
    Retry(MessageId),
}

impl Reserved {
    /// The message id to send under.
    pub fn id(self) -> MessageId {
        match self {
            Reserved::New(id) | Reserved::Retry(id) => id,
        }
    }
}

/// Why a key was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// Empty, too long, or not visible ASCII.
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    BadKey,
    /// The key was used for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    Conflict,
    /// A stored id that does not read back.
    #[error("the idempotency table is damaged")]
    Damaged,
    /// The database failed.
    #[error("the local database failed: {0}")]
    Db(#[from] sqlx::Error),
}

/// The idempotency keys of one home.
#[derive(Debug, Clone)]
pub struct IdempotencyKeys {
    pool: SqlitePool,
}

impl IdempotencyKeys {
    /// The keys in the home's local store (see `LocalStore::pool`).
    pub fn new(pool: SqlitePool) -> Self {
        IdempotencyKeys { pool }
    }

    /// The message id for `idem_key` of API key `api_key`, given the
    /// request's canonical bytes.
    pub async fn reserve(
        &self,
        api_key: &str,
        idem_key: &str,
        request: &[u8],
        now_ms: u64,
    ) -> Result<Reserved, IdempotencyError> {
        if idem_key.is_empty()
            || idem_key.len() > MAX_KEY_BYTES
            || !idem_key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(IdempotencyError::BadKey);
        }
        let hash = Sha256::digest(request);
        let fresh = MessageId::random();
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let cutoff = i64::try_from(now_ms.saturating_sub(KEEP_MS)).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (api_key, idem_key, request_hash, message_id, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (api_key, idem_key) DO NOTHING",
        )
        .bind(api_key)
        .bind(idem_key)
        .bind(&hash[..])
        .bind(&fresh.0[..])
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = sqlx::query(
            "SELECT request_hash, message_id FROM idempotency_keys WHERE api_key = ? AND idem_key = ?",
        )
        .bind(api_key)
        .bind(idem_key)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if inserted == 1 {
            return Ok(Reserved::New(fresh));
        }
        let stored_hash: Vec<u8> = row.try_get("request_hash")?;
        if stored_hash.as_slice() != &hash[..] {
            return Err(IdempotencyError::Conflict);
        }
        let id: Vec<u8> = row.try_get("message_id")?;
        let id = <[u8; 16]>::try_from(id.as_slice()).map_err(|_| IdempotencyError::Damaged)?;
        Ok(Reserved::Retry(MessageId(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_client::local::LocalStore;

    #[tokio::test]
    async fn a_retry_gets_the_same_id_another_request_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let keys = IdempotencyKeys::new(local.pool().clone());
        let first = keys
            .reserve("cmk_a", "k1", b"send hi", 1_000)
            .await
            .unwrap();
        let Reserved::New(id) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            keys.reserve("cmk_a", "k1", b"send hi", 2_000)
                .await
                .unwrap(),
            Reserved::Retry(id)
        );
        assert!(matches!(
            keys.reserve("cmk_a", "k1", b"send bye", 2_000).await,
            Err(IdempotencyError::Conflict)
        ));
        // Another API key, or another idempotency key: another message.
        assert_ne!(
            keys.reserve("cmk_b", "k1", b"send hi", 2_000)
                .await
                .unwrap()
                .id(),
            id
        );
        assert_ne!(
            keys.reserve("cmk_a", "k2", b"send hi", 2_000)
                .await
                .unwrap()
                .id(),
            id
        );
        // A day later the key is forgotten: the same request is new again.
        let later = keys
            .reserve("cmk_a", "k1", b"send hi", 1_000 + KEEP_MS + 1)
            .await
            .unwrap();
        assert!(matches!(later, Reserved::New(other) if other != id));
        for bad in ["", "tab\there", &"x".repeat(256), "é"] {
            assert!(matches!(
                keys.reserve("cmk_a", bad, b"x", 1).await,
                Err(IdempotencyError::BadKey)
            ));
        }
    }
}
