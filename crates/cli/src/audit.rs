//! `claudemesh audit verify|list`: the local audit log of policy decisions
//! (`policy::audit_log`), its hash chain checked, its latest lines shown.

use std::path::PathBuf;

use clap::Subcommand;
use claudemesh_client::home::resolve_home;
use serde_json::Value;

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::output;
use crate::policy::audit_log::{FILE, read_lines, verify};
use crate::policy::{Request, Verb};

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain of the audit log; names the first broken line
    Verify,
    /// The latest policy decisions, oldest first
    #[command(visible_alias = "ls")]
    List {
        /// At most this many (the newest)
        #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
}

impl AuditCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            AuditCmd::Verify => Request::new(Verb::AuditVerify, None, false),
            AuditCmd::List { .. } => Request::new(Verb::AuditList, None, false),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            AuditCmd::Verify => verify_cmd(g),
            AuditCmd::List { limit } => list_cmd(g, limit),
        }
    }
}

fn log_path(g: &Global) -> Result<PathBuf, Failure> {
    Ok(resolve_home(g.home.as_deref())?.join(FILE))
}

/// `claudemesh audit verify`.
fn verify_cmd(g: &Global) -> Outcome {
    let path = log_path(g)?;
    let report = verify(&path)?;
    if g.json {
        let mut v = serde_json::json!({
            "ok": report.broken.is_none(),
            "entries": report.entries,
            "path": path.display().to_string(),
        });
        if let Some(b) = &report.broken {
            v["broken_line"] = b.line.into();
            v["reason"] = b.reason.clone().into();
        }
        output::json(&v);
    }
    match report.broken {
        None => {
            if !g.json && !g.quiet {
                if report.entries == 0 {
                    println!("{}: no entries yet.", path.display());
                } else {
                    let n = report.entries;
                    let noun = if n == 1 { "entry" } else { "entries" };
                    println!("{}: {n} {noun}; the hash chain verifies.", path.display());
                }
            }
            Ok(())
        }
        Some(b) => Err(Failure::new(
            exit::SECURITY,
            format!(
                "{} is broken at line {}: {}",
                path.display(),
                b.line,
                b.reason
            ),
        )
        .hint("do not trust that line or any after it; the decisions before it stand")),
    }
}

/// `claudemesh audit list`.
fn list_cmd(g: &Global, limit: u32) -> Outcome {
    let path = log_path(g)?;
    let lines = read_lines(&path)?;
    let skip = lines.len().saturating_sub(limit as usize);
    let mut entries = Vec::new();
    let mut unreadable = 0usize;
    for line in &lines[skip..] {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) if v.is_object() => entries.push(v),
            _ => unreadable += 1,
        }
    }
    if unreadable > 0 {
        eprintln!(
            "warning: {unreadable} line(s) of {} are not audit entries; run `claudemesh audit verify`",
            path.display()
        );
    }
    if g.json {
        output::json(&entries);
        return Ok(());
    }
    if entries.is_empty() {
        if !g.quiet {
            println!("No decisions recorded yet.");
        }
        return Ok(());
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    output::table(
        &[
            "TIME", "DECISION", "VERB", "TARGET", "MESH", "MODE", "REASON",
        ],
        &entries
            .iter()
            .map(|v| {
                vec![
                    s(v, "time").replace('T', " "),
                    s(v, "decision"),
                    s(v, "verb"),
                    s(v, "target"),
                    s(v, "mesh"),
                    s(v, "mode"),
                    s(v, "reason"),
                ]
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}
