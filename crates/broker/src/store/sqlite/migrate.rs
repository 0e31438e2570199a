//! The SQLite schema: its migrations, embedded in the binary (the same
//! tables as Postgres', in SQLite's types).

use sqlx::migrate::Migrator;

use crate::store::shared::migration;

/// The SQLite migrations, embedded in the binary.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        migration(
            1,
            "init",
            include_str!("../../../../../migrations/sqlite/0001_init.sql"),
        ),
        migration(
            2,
            "fanout",
            include_str!("../../../../../migrations/sqlite/0002_fanout.sql"),
        ),
        migration(
            3,
            "grants",
            include_str!("../../../../../migrations/sqlite/0003_grants.sql"),
        ),
        migration(
            4,
            "replicas",
            include_str!("../../../../../migrations/sqlite/0004_replicas.sql"),
        ),
        migration(
            5,
            "receipts",
            include_str!("../../../../../migrations/sqlite/0005_receipts.sql"),
        ),
        migration(
            6,
            "scheduled",
            include_str!("../../../../../migrations/sqlite/0006_scheduled.sql"),
        ),
        migration(
            7,
            "coord",
            include_str!("../../../../../migrations/sqlite/0007_coord.sql"),
        ),
        migration(
            8,
            "tasks",
            include_str!("../../../../../migrations/sqlite/0008_tasks.sql"),
        ),
        migration(
            9,
            "leases",
            include_str!("../../../../../migrations/sqlite/0009_leases.sql"),
        ),
    ])
}
