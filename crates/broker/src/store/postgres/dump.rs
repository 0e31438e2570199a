//! Every Postgres table, every row, as text rendered the way SQLite's
//! `quote()` renders it, in one snapshot, for the TM1 audit and the demo.

use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row};

use crate::store::error::StoreError;
use crate::store::records::TableDump;
use crate::store::shared::rows_as_text;

pub(super) async fn dump(pool: &PgPool) -> Result<Vec<TableDump>, StoreError> {
    // One snapshot for every table.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         ORDER BY table_name::text COLLATE \"C\"",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        let cols = sqlx::query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 \
             ORDER BY ordinal_position",
        )
        .bind(&table)
        .fetch_all(&mut *tx)
        .await?;
        let mut columns = Vec::with_capacity(cols.len());
        let mut select = Vec::with_capacity(cols.len());
        for c in &cols {
            let name: String = c.try_get(0)?;
            let data_type: String = c.try_get(1)?;
            select.push(render_column(&name, &data_type));
            columns.push(name);
        }
        if columns.is_empty() {
            continue;
        }
        // Table and column names come from Postgres' own catalog, never
        // from a peer; they are quoted as identifiers all the same.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM {}",
            select.join(", "),
            quote_ident(&table)
        )))
        .fetch_all(&mut *tx)
        .await?;
        let values = rows_as_text(rows, columns.len())?;
        out.push(TableDump {
            table,
            columns,
            rows: values,
        });
    }
    tx.commit().await?;
    Ok(out)
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A select expression rendering one column as text the way SQLite's
/// `quote()` does, so both backends dump alike: `NULL`, numbers as digits,
/// blobs as `X'…'` (uppercase hex), booleans as 1/0, anything else as a
/// single-quoted string literal.
fn render_column(name: &str, data_type: &str) -> String {
    let c = quote_ident(name);
    match data_type {
        "bytea" => format!("COALESCE('X''' || upper(encode({c}, 'hex')) || '''', 'NULL')"),
        "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision" => {
            format!("COALESCE({c}::text, 'NULL')")
        }
        "boolean" => format!("CASE WHEN {c} IS NULL THEN 'NULL' WHEN {c} THEN '1' ELSE '0' END"),
        _ => format!("COALESCE('''' || replace({c}::text, '''', '''''') || '''', 'NULL')"),
    }
}
