//! Every SQLite table, every row, as text (`quote()` renders each value the
//! way the Postgres dump imitates), for the TM1 audit and the demo.

use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Row};

use crate::store::error::StoreError;
use crate::store::records::TableDump;
use crate::store::shared::rows_as_text;

pub(super) async fn dump(pool: &SqlitePool) -> Result<Vec<TableDump>, StoreError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        // Table and column names come from SQLite's own catalog, never
        // from a peer; they are quoted as identifiers all the same.
        let ident = format!("\"{}\"", table.replace('"', "\"\""));
        let columns: Vec<String> = sqlx::query(AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{}') ORDER BY cid",
            table.replace('\'', "''")
        )))
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        if columns.is_empty() {
            continue;
        }
        let select = columns
            .iter()
            .map(|c| format!("quote(\"{}\")", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {select} FROM {ident}")))
            .fetch_all(pool)
            .await?;
        let values = rows_as_text(rows, columns.len())?;
        out.push(TableDump {
            table,
            columns,
            rows: values,
        });
    }
    Ok(out)
}
