//! Multi-row statements for SQLite, which has no array parameters: how many
//! rows one statement takes, and the `(?, ?, …), …` lists that bind them.
//! Only placeholders go into the text; every value is bound (TM10).

/// Rows per multi-row statement (well under SQLite's 32766 variables).
pub(super) const ROWS_PER_STATEMENT: usize = 256;

/// `(?, ?, …), (?, ?, …)`: `rows` groups of `cols` placeholders.
pub(super) fn placeholders(rows: usize, cols: usize) -> String {
    let group = format!("({})", vec!["?"; cols].join(", "));
    placeholders_with(rows, &group)
}

/// `rows` copies of `group`, comma-separated.
pub(super) fn placeholders_with(rows: usize, group: &str) -> String {
    vec![group; rows].join(", ")
}
