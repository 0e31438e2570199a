//! What install and uninstall report: each file's action, backup, changes
//! and notes, as one JSON object with `--json` or as lines for people.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// What happened (or would) to one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    /// `created`, `modified`, `unchanged`, `restored` (the original bytes
    /// written back), `deleted`.
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One change inside a file.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `add`, `replace`, `remove`, `restore`.
    pub op: &'static str,
    /// The JSON path (`hooks.Stop[]`); empty (left out) for a whole file.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl FileReport {
    pub fn new(path: &Path, action: &'static str) -> FileReport {
        FileReport {
            path: path.display().to_string(),
            action,
            backup: None,
            changes: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// What `install` or `uninstall` did (or would), as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: &'static str,
    pub dry_run: bool,
    pub changed: bool,
    pub files: Vec<FileReport>,
    pub manifest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<&'static str>,
}

/// The files that change, and how, for people.
pub fn print_files(files: &[FileReport], dry: bool) {
    for f in files {
        if f.action == "unchanged" {
            continue;
        }
        let action = match (dry, f.action) {
            (false, a) => a.to_owned(),
            (true, "created") => "would be created".to_owned(),
            (true, "deleted") => "would be deleted".to_owned(),
            (true, "restored") => "would get its original bytes back".to_owned(),
            (true, _) => "would be modified".to_owned(),
        };
        let mut line = format!("  {}  ({action}", f.path);
        if let Some(b) = &f.backup {
            let verb = if dry { "backup first to" } else { "backup:" };
            line.push_str(&format!("; {verb} {b}"));
        }
        line.push(')');
        println!("{line}");
        for c in &f.changes {
            let sign = match c.op {
                "add" => "+",
                "remove" => "-",
                _ => "~",
            };
            match &c.value {
                Some(v) if !c.path.is_empty() => println!("    {sign} {}  {v}", c.path),
                _ if !c.path.is_empty() => println!("    {sign} {}", c.path),
                _ => {}
            }
        }
        for n in &f.notes {
            println!("    ({n})");
        }
    }
}
