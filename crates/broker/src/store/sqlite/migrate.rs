//! The SQLite schema: its migrations, embedded in the binary (the same
//! tables as Postgres', in SQLite's types).

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The SQLite migrations, embedded in the binary.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../../migrations/sqlite/0001_init.sql"
            )),
            false,
        ),
        Migration::new(
            2,
            "fanout".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../../migrations/sqlite/0002_fanout.sql"
            )),
            false,
        ),
        Migration::new(
            3,
            "grants".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../../migrations/sqlite/0003_grants.sql"
            )),
            false,
        ),
        Migration::new(
            4,
            "replicas".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!(
                "../../../../../migrations/sqlite/0004_replicas.sql"
            )),
            false,
        ),
    ])
}
