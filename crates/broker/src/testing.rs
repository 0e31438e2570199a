//! Test support shared by the broker's unit and integration tests (and the
//! client's): fresh, throwaway databases on the Postgres named by
//! `DATABASE_URL`, and SQLite URLs in a temporary directory. Not part of the
//! broker's API.
//!
//! Postgres is required, not optional: when none answers,
//! [`fresh_postgres_url`] returns an error saying how to start one, and tests
//! `.expect()` it, so they fail instead of silently skipping.

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use crate::db_url::redact_url;

/// The server tests use when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of every throwaway database (so leftovers are easy to find).
pub const TEST_DATABASE_PREFIX: &str = "cm_test_";

/// How long to wait for the Postgres server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a throwaway database could not be made. `Debug` prints the message
/// too, so `.expect()` shows it as is.
#[derive(Clone, PartialEq, Eq)]
pub struct TestDbError(String);

impl std::fmt::Display for TestDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for TestDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestDbError {}

/// A throwaway Postgres database, dropped when done.
///
/// Prefer `db.drop_database().await` at the end of a test. As a fallback
/// (a test that panics, or forgets), `Drop` removes it too: async work
/// cannot run inside `drop`, and a task spawned on a `#[tokio::test]`
/// runtime would never run (the runtime ends with the test), so `Drop`
/// runs the `DROP DATABASE` on a short-lived thread with its own runtime and
/// waits for it. Either way it is best effort: a failure is only logged.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    admin_url: String,
    name: String,
    dropped: bool,
}

impl TestDatabase {
    /// The database's URL (same server and credentials as `DATABASE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`cm_test_…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now (terminating any connection still open to it).
    pub async fn drop_database(mut self) {
        self.dropped = true;
        drop_now(&self.admin_url, &self.name).await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let worker =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(drop_now(&admin_url, &name)),
                    Err(e) => tracing::warn!("cannot drop test database {name}: {e}"),
                }
            });
        let _ = worker.join();
    }
}

async fn drop_now(admin_url: &str, name: &str) {
    let result = async {
        let mut conn = PgConnection::connect(admin_url).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!("cannot drop test database {name}: {e}");
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The server URL tests use: `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// Creates a uniquely named, empty database (`cm_test_<16 hex>`) on the
/// server `DATABASE_URL` names (default [`DEFAULT_DATABASE_URL`]; the role
/// must be allowed to `CREATE DATABASE`). Fails, with how to start one,
/// when no Postgres answers.
pub async fn fresh_postgres_url() -> Result<TestDatabase, TestDbError> {
    let admin_url = database_url();
    let no_postgres = |e: &dyn std::fmt::Display| {
        TestDbError(format!(
            "no Postgres at {}: start one (pg_ctlcluster --skip-systemctl-redirect 15 main start) \
             or set DATABASE_URL ({e})",
            redact_url(&admin_url)
        ))
    };
    let mut conn =
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&admin_url)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(no_postgres(&e)),
            Err(_) => return Err(no_postgres(&format!("no answer in {CONNECT_TIMEOUT:?}"))),
        };
    let name = format!(
        "{TEST_DATABASE_PREFIX}{}",
        hex::encode(claudemesh_crypto::keys::random_bytes::<8>())
    );
    // `name` is ours (prefix + hex), never outside input; quoted anyway.
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        quote_ident(&name)
    )))
    .execute(&mut conn)
    .await
    .map_err(|e| {
        TestDbError(format!(
            "cannot create a test database on {}: {e}",
            redact_url(&admin_url)
        ))
    })?;
    let _ = conn.close().await;
    Ok(TestDatabase {
        url: with_database(&admin_url, &name),
        admin_url,
        name,
        dropped: false,
    })
}

/// A SQLite database URL in `dir` (`sqlite://<dir>/broker.db`); the store
/// creates the file when it opens it.
pub async fn fresh_sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}/broker.db", dir.display())
}

/// `url` with its database (the path) replaced by `name`, keeping the
/// scheme, credentials, host and query parameters.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}{authority}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            with_database("postgres:///db?host=/run/postgresql", "x"),
            "postgres:///x?host=/run/postgresql"
        );
    }

    #[tokio::test]
    async fn a_fresh_database_is_created_and_dropped() {
        let db = fresh_postgres_url().await.expect("Postgres for tests");
        assert!(db.name().starts_with(TEST_DATABASE_PREFIX));
        let mut conn = PgConnection::connect(db.url()).await.unwrap();
        let current: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(current, db.name());
        let name = db.name().to_owned();
        // The open connection is terminated by the forced drop.
        db.drop_database().await;
        let mut admin = PgConnection::connect(&database_url()).await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn dropping_the_guard_drops_the_database() {
        let db = fresh_postgres_url().await.expect("Postgres for tests");
        let name = db.name().to_owned();
        drop(db);
        let mut admin = PgConnection::connect(&database_url()).await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn sqlite_url_points_into_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_sqlite_url(dir.path()).await;
        assert_eq!(url, format!("sqlite://{}/broker.db", dir.path().display()));
    }
}
