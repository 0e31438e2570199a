//! The Postgres schema: its migrations, embedded in the binary, applied
//! under a (timed) advisory lock so replicas starting together serialize
//! and a broker never waits forever behind another.

use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::store::error::StoreError;
use crate::store::shared::migration;

/// The advisory-lock key claudemesh brokers take while migrating: the ASCII
/// bytes of "claudems" as a big-endian i64. Advisory locks are scoped to the
/// current database, so brokers on other databases of the same server never
/// contend for it.
pub(super) const MIGRATION_LOCK_KEY: i64 = 0x636c_6175_6465_6d73;

/// How often a broker retries the migration lock while another holds it.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// The Postgres migrations, embedded in the binary.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        migration(
            1,
            "init",
            include_str!("../../../../../migrations/postgres/0001_init.sql"),
        ),
        migration(
            2,
            "fanout",
            include_str!("../../../../../migrations/postgres/0002_fanout.sql"),
        ),
        migration(
            3,
            "grants",
            include_str!("../../../../../migrations/postgres/0003_grants.sql"),
        ),
        migration(
            4,
            "replicas",
            include_str!("../../../../../migrations/postgres/0004_replicas.sql"),
        ),
        migration(
            5,
            "receipts",
            include_str!("../../../../../migrations/postgres/0005_receipts.sql"),
        ),
        migration(
            6,
            "scheduled",
            include_str!("../../../../../migrations/postgres/0006_scheduled.sql"),
        ),
        migration(
            7,
            "coord",
            include_str!("../../../../../migrations/postgres/0007_coord.sql"),
        ),
        migration(
            8,
            "tasks",
            include_str!("../../../../../migrations/postgres/0008_tasks.sql"),
        ),
        migration(
            9,
            "leases",
            include_str!("../../../../../migrations/postgres/0009_leases.sql"),
        ),
    ])
}

/// Applies `migrator` on one dedicated connection, holding the claudemesh
/// advisory lock. sqlx's own lock (`pg_advisory_lock`) waits forever, so it
/// is turned off and replaced by polling `pg_try_advisory_lock` until
/// `timeout`. The connection is closed at the end, which also releases the
/// lock should the explicit unlock not run (a session-level lock dies with
/// its session; a pooled connection would have kept it).
pub(super) async fn migrate(
    opts: &PgConnectOptions,
    mut migrator: Migrator,
    timeout: Duration,
) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect_with(opts).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            // Best effort: the error that matters is the timeout.
            let _ = conn.close().await;
            return Err(StoreError::LockTimeout(timeout));
        }
        tokio::time::sleep(LOCK_POLL.min(deadline - now)).await;
    }
    migrator.set_locking(false);
    // `run_direct` is what `run` calls after acquiring; calling it on the
    // connection directly keeps this future `Send` for any lifetime (`run`
    // with a `&mut PgConnection` hits "implementation of `Acquire` is not
    // general enough" once the future is spawned).
    let applied = migrator.run_direct(None, &mut conn, false).await;
    let released = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .fetch_one(&mut conn)
        .await;
    // Closing ends the session, so the lock is gone whatever happened above.
    let closed = conn.close().await;
    applied?;
    released?;
    closed?;
    Ok(())
}
