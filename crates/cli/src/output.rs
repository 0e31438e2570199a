//! How the CLI prints: JSON for scripts (`--json`, one document on stdout),
//! aligned columns and relative times for people, and a terminal QR code
//! (only on a terminal; never mixed into JSON).

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Prints a value as JSON on stdout.
pub fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}

/// Prints a value as one line of JSON on stdout (a stream of events, one
/// document per line, as `state watch --json` prints).
pub fn json_line<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// Prints a listing: the rows as JSON with `--json`; else `empty` (what
/// to do next) when there are none; else a table of `cells` per row.
pub fn listing<T: Serialize>(
    as_json: bool,
    rows: &[T],
    empty: &str,
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) {
    if as_json {
        json(&rows);
    } else if rows.is_empty() {
        println!("{empty}");
    } else {
        table(header, &rows.iter().map(cells).collect::<Vec<_>>());
    }
}

/// Prints rows as left-aligned columns (the last column is not padded).
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut width = vec![0usize; cols];
    for (i, h) in header.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// `2026-11-25 10:00:03Z` from unix milliseconds.
pub fn timestamp(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
}

/// `5m ago`, `2h ago`, `3d ago` from unix milliseconds.
pub fn ago(ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// Draws `text` as a QR code with half-block characters, if stdout is a
/// terminal that can show it.
pub fn qr(text: &str) {
    if !stdout_is_tty() || std::env::var("TERM").is_ok_and(|t| t == "dumb") {
        return;
    }
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else {
        return;
    };
    let art = code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    println!("{art}");
}

/// The first 8 characters of a hex id.
pub fn short(hex: &str) -> &str {
    &hex[..hex.len().min(8)]
}

/// A peer's text as a terminal shows it: every control character but
/// newline and tab dropped (the escape that starts a terminal sequence, a
/// carriage return, a backspace), so the text cannot move the cursor,
/// recolour or retitle the terminal, or write over what came before it;
/// and the bidirectional controls, so it cannot reorder itself on screen.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| (!c.is_control() || *c == '\n' || *c == '\t') && !is_bidi_control(*c))
        .collect()
}

/// The Unicode bidirectional controls (embeddings, overrides, isolates and
/// marks): invisible, they reorder what follows, so a peer's text could
/// show one thing and say another ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_drops_terminal_escapes_but_keeps_lines() {
        assert_eq!(printable("port 5433\n\tsee #42"), "port 5433\n\tsee #42");
        assert_eq!(
            printable("ok\u{1b}[2J\u{1b}]0;pwned\u{7}\r\u{8}!"),
            "ok[2J]0;pwned!"
        );
        assert_eq!(printable("\u{9b}31mred"), "31mred");
        // Bidirectional overrides and isolates go too; other text stays.
        assert_eq!(
            printable("pay \u{202E}0001\u{202C} \u{2067}x\u{2069} ok \u{05D0} 👍"),
            "pay 0001 x ok \u{05D0} 👍"
        );
    }
}
