//! The audit log, `<home>/audit.log`: one JSON object per line for every
//! policy decision (allowed, denied, prompted-yes, prompted-no), hash
//! chained so an edit, a removal or an insertion shows. Each line carries
//! `prev`, the SHA-256 of the previous line's text (64 zeros for the first
//! line), and ends with `hash`, the SHA-256 of its own text without the
//! `,"hash":"…"` member. [`append`] writes a line (the policy's decisions),
//! [`verify`] checks the chain and names the first broken line (`claudemesh
//! audit verify`, in `crate::audit`).
//!
//! A hash chain kept on this device shows edits of lines in the middle; a
//! rewrite of the whole log, or of its tail, by someone who can write the
//! file goes unseen (there is no outside anchor).

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use claudemesh_client::home::ensure_private_dir;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::exit::{self, Failure};

/// The log's file name in the home.
pub const FILE: &str = "audit.log";
/// `prev` of the first line.
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;
/// How much of the end of the file is read to find the last line.
const TAIL_BYTES: u64 = 64 * 1024;

/// One decision to record.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// `allowed`, `denied`, `prompted-yes` or `prompted-no`.
    pub decision: &'a str,
    /// The verb (`peer.ban`).
    pub verb: &'a str,
    /// What it acted on.
    pub target: Option<&'a str>,
    /// The mesh's name.
    pub mesh: Option<&'a str>,
    /// The approval mode in force.
    pub mode: &'a str,
    /// Why.
    pub reason: &'a str,
}

/// A line as written, before its `hash`.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time: String,
    decision: &'a str,
    verb: &'a str,
    target: Option<&'a str>,
    mesh: Option<&'a str>,
    mode: &'a str,
    reason: &'a str,
    prev: String,
}

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} the audit log {path}: {source}", path = path.display())]
pub struct AuditError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

impl From<AuditError> for Failure {
    fn from(e: AuditError) -> Self {
        Failure::new(exit::IO, format!("{e}; nothing was done"))
            .hint("every decision must be logged: fix the file's permissions, or move it away")
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Appends a decision to `<home>/audit.log` (0600), under an exclusive
/// lock so processes sharing the home keep one chain.
pub fn append(home: &Path, r: &Record<'_>) -> Result<(), AuditError> {
    let path = home.join(FILE);
    let err = |what, source| AuditError {
        what,
        path: path.clone(),
        source,
    };
    ensure_private_dir(home).map_err(|e| err("create", std::io::Error::other(e.to_string())))?;
    let mut opts = fs::OpenOptions::new();
    opts.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = opts.open(&path).map_err(|e| err("open", e))?;
    file.lock().map_err(|e| err("lock", e))?;
    let (last, torn) = last_line(&mut file).map_err(|e| err("read", e))?;
    let (seq, prev) = match &last {
        None => (1, ZERO.to_owned()),
        Some(line) => {
            let seq = match line_seq(line) {
                Some(s) => s + 1,
                None => count_lines(&mut file).map_err(|e| err("read", e))? + 1,
            };
            (seq, sha256_hex(line))
        }
    };
    let body = serde_json::to_string(&Body {
        seq,
        time: now_rfc3339(),
        decision: r.decision,
        verb: r.verb,
        target: r.target,
        mesh: r.mesh,
        mode: r.mode,
        reason: r.reason,
        prev,
    })
    .map_err(|e| err("encode", std::io::Error::other(e)))?;
    let hash = sha256_hex(body.as_bytes());
    let mut line = String::with_capacity(body.len() + HASH_SUFFIX_LEN + 2);
    if torn {
        // The last write was cut short: end that line so it shows as broken.
        line.push('\n');
    }
    line.push_str(&body[..body.len() - 1]);
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}\n");
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|e| err("write", e))?;
    Ok(())
}

/// The last line's bytes (without its newline), and whether the file
/// ends without a newline.
fn last_line(file: &mut fs::File) -> std::io::Result<(Option<Vec<u8>>, bool)> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((None, false));
    }
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let torn = tail.last() != Some(&b'\n');
    let body = if torn {
        &tail[..]
    } else {
        &tail[..tail.len() - 1]
    };
    match body.iter().rposition(|b| *b == b'\n') {
        Some(at) => Ok((Some(body[at + 1..].to_vec()), torn)),
        None if start == 0 => Ok((Some(body.to_vec()), torn)),
        None => {
            // A line longer than the tail read: read it all.
            file.seek(SeekFrom::Start(0))?;
            let mut all = Vec::new();
            file.read_to_end(&mut all)?;
            let body = if torn {
                &all[..]
            } else {
                &all[..all.len() - 1]
            };
            let from = body
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |at| at + 1);
            Ok((Some(body[from..].to_vec()), torn))
        }
    }
}

fn count_lines(file: &mut fs::File) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut all = Vec::new();
    file.read_to_end(&mut all)?;
    Ok(all.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64)
}

fn line_seq(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(line)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// The first line that breaks the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// How many lines the log has.
    pub entries: usize,
    /// The first broken line, if any.
    pub broken: Option<Broken>,
}

/// The lines of the log (a missing file has none).
pub fn read_lines(path: &Path) -> Result<Vec<Vec<u8>>, AuditError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(AuditError {
                what: "read",
                path: path.to_owned(),
                source: e,
            });
        }
    };
    let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    Ok(lines)
}

/// Checks one line against the hash of the line before it.
fn check_line(number: usize, line: &[u8], expected_prev: &str) -> Result<(), String> {
    let text = std::str::from_utf8(line).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let not_entry = || "it is not an audit entry (no hash at its end)".to_owned();
    if text.len() < HASH_SUFFIX_LEN + 2 || !text.is_char_boundary(text.len() - HASH_SUFFIX_LEN) {
        return Err(not_entry());
    }
    let (head, suffix) = text.split_at(text.len() - HASH_SUFFIX_LEN);
    let hash = suffix
        .strip_prefix(",\"hash\":\"")
        .and_then(|s| s.strip_suffix("\"}"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(not_entry)?;
    let body = format!("{head}}}");
    if sha256_hex(body.as_bytes()) != hash {
        return Err(
            "it was changed after it was written (its hash does not match its text)".into(),
        );
    }
    let v: Value = serde_json::from_str(&body).map_err(|_| not_entry())?;
    let prev = v.get("prev").and_then(Value::as_str).unwrap_or_default();
    if prev != expected_prev {
        return Err(if number == 1 {
            "it does not start the chain (its prev is not zeros): lines before it were removed"
                .into()
        } else {
            format!(
                "it does not follow line {}: a line was removed, inserted or rewritten before it",
                number - 1
            )
        });
    }
    let seq = v.get("seq").and_then(Value::as_u64);
    if seq != Some(number as u64) {
        return Err(format!(
            "its seq is {} where {number} was expected: lines were removed or reordered",
            seq.map_or_else(|| "missing".to_owned(), |s| s.to_string())
        ));
    }
    Ok(())
}

/// Checks the whole chain of the log at `path`.
pub fn verify(path: &Path) -> Result<Report, AuditError> {
    let lines = read_lines(path)?;
    let mut prev = ZERO.to_owned();
    for (i, line) in lines.iter().enumerate() {
        if let Err(reason) = check_line(i + 1, line, &prev) {
            return Ok(Report {
                entries: lines.len(),
                broken: Some(Broken {
                    line: i + 1,
                    reason,
                }),
            });
        }
        prev = sha256_hex(line);
    }
    Ok(Report {
        entries: lines.len(),
        broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(verb: &str) -> Record<'_> {
        Record {
            decision: "allowed",
            verb,
            target: Some("carol"),
            mesh: Some("team"),
            mode: "write",
            reason: "--yes",
        }
    }

    #[test]
    fn the_chain_verifies_and_names_the_first_broken_line() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let path = home.join(FILE);
        assert_eq!(verify(&path).unwrap().entries, 0);
        for v in ["peer.ban", "peer.kick", "mesh.leave", "restore"] {
            append(home, &rec(v)).unwrap();
        }
        let r = verify(&path).unwrap();
        assert_eq!(r.entries, 4);
        assert!(r.broken.is_none(), "{r:?}");
        let text = fs::read_to_string(&path).unwrap();
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["prev"], ZERO);
        assert_eq!(first["seq"], 1);

        // Editing line 2 names line 2.
        let edited = text.replacen("peer.kick", "peer.list", 1);
        fs::write(&path, &edited).unwrap();
        let b = verify(&path).unwrap().broken.unwrap();
        assert_eq!(b.line, 2, "{b:?}");
        assert!(b.reason.contains("changed"), "{b:?}");

        // Removing line 2 breaks line 3's link.
        let lines: Vec<&str> = text.lines().collect();
        fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3])).unwrap();
        let b = verify(&path).unwrap().broken.unwrap();
        assert_eq!(b.line, 2, "{b:?}");
        assert!(b.reason.contains("does not follow line 1"), "{b:?}");

        // Appending after a torn write keeps the chain going past it, and
        // the torn line is what verify names.
        fs::write(&path, format!("{}\n{}", lines[0], &lines[1][..20])).unwrap();
        append(home, &rec("peer.ban")).unwrap();
        let b = verify(&path).unwrap().broken.unwrap();
        assert_eq!(b.line, 2, "{b:?}");
        assert_eq!(read_lines(&path).unwrap().len(), 3);
    }

    #[test]
    fn a_line_longer_than_the_tail_is_still_chained() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let long = "x".repeat(70_000);
        append(
            home,
            &Record {
                target: Some(&long),
                ..rec("message.send")
            },
        )
        .unwrap();
        append(home, &rec("peer.ban")).unwrap();
        let r = verify(&home.join(FILE)).unwrap();
        assert!(r.broken.is_none(), "{r:?}");
        assert_eq!(r.entries, 2);
    }
}
