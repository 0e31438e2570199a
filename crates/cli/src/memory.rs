//! `claudemesh memory …` (`remember`, `recall`, `list`, `forget`): team
//! memory, notes sealed to the mesh (the broker stores them but cannot read
//! them), synced to this device and searched here. What a note is, how it
//! is sealed, synced and searched is the client's
//! ([`claudemesh_client::memory`]); this file reads the command line and
//! shows notes, for people and (`--json`) for scripts, and for the MCP
//! tools (`memory_remember`, `memory_recall`, `memory_forget`).
//!
//! A note is a peer's words: its text is shown without control characters
//! (no terminal escapes), and its author by the naming rule messages use
//! (`alice (3fa2c1d0, NOT the alice you verified)`).

use std::io::Read as _;

use clap::{Args, Subcommand};
use claudemesh_client::MeshClient;
use claudemesh_client::memory::{Note, fts_query, id_prefix, validate_note};
use claudemesh_client::mesh::Label;
use claudemesh_client::mesh::pins::Pins;
use serde::Serialize;

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::mesh::connect;
use crate::names;
use crate::output;
use crate::policy::{Request, Verb};
use crate::schedule::local_time;

/// How many notes `recall` shows unless told.
pub const RECALL_LIMIT: usize = 10;
/// How many notes `list` shows unless told.
pub const LIST_LIMIT: usize = 20;
/// The most notes one `recall` or `list` shows.
pub const MAX_LIMIT: usize = 100;
/// How many lines of a note a listing shows (`--json` has them all).
const SHOWN_LINES: usize = 4;

#[derive(Debug, Subcommand)]
pub enum MemoryCmd {
    /// Remember a note for the whole mesh: a fact, a decision, a gotcha (sealed: the broker cannot read it)
    Remember(RememberArgs),
    /// Search the mesh's notes (fetches new ones, then searches on this device)
    Recall(RecallArgs),
    /// The mesh's notes, newest first
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Forget a note, for everyone in the mesh
    Forget {
        /// Its id (as `remember` printed it, or at least its first 4 hex
        /// digits as `recall` and `list` show it)
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct RememberArgs {
    /// The note (1-8192 bytes); "-" reads it from stdin
    pub text: String,
    /// Tags to find it by (comma-separated; at most 16, each 1-32 of A-Z a-z 0-9 _ . -)
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RecallArgs {
    /// What to look for: notes with any of these words come back, best match first
    #[arg(required = true, value_name = "QUERY")]
    pub query: Vec<String>,
    /// Only notes with every one of these tags (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// At most this many notes (1-100)
    #[arg(long, default_value_t = RECALL_LIMIT, value_parser = parse_limit)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only notes with every one of these tags (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// At most this many notes (1-100), newest first
    #[arg(long, default_value_t = LIST_LIMIT, value_parser = parse_limit)]
    pub limit: usize,
}

/// `--limit`: 1 to [`MAX_LIMIT`].
fn parse_limit(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("give a number from 1 to {MAX_LIMIT}")),
    }
}

impl MemoryCmd {
    /// What it asks the policy. The note's text is never a target: the
    /// audit log keeps targets.
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            MemoryCmd::Remember(_) => Request::new(Verb::MemoryRemember, None, true),
            MemoryCmd::Recall(_) => Request::new(Verb::MemoryRecall, None, true),
            MemoryCmd::List(_) => Request::new(Verb::MemoryList, None, true),
            // The prompt and the audit log show hex digits only; a bad id
            // is refused by `forget` (exit 3) after the policy's answer.
            MemoryCmd::Forget { id } => {
                let shown = claudemesh_client::memory::id_prefix(id)
                    .unwrap_or_else(|_| crate::output::printable(id).chars().take(40).collect());
                Request::new(Verb::MemoryForget, Some(&shown), true)
            }
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            MemoryCmd::Remember(a) => remember(g, a).await,
            MemoryCmd::Recall(a) => recall(g, a).await,
            MemoryCmd::List(a) => list(g, a).await,
            MemoryCmd::Forget { id } => forget(g, &id).await,
        }
    }
}

/// The note's text: the argument, or stdin for "-".
fn read_text(text: &str) -> Result<String, Failure> {
    if text != "-" {
        return Ok(text.to_owned());
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Failure::new(exit::IO, format!("cannot read stdin: {e}")))?;
    Ok(s)
}

/// One note as `--json` (and the MCP tools) show it: the client's fields,
/// and its author by the naming rule.
#[derive(Debug, Serialize)]
pub(crate) struct ShownNote {
    #[serde(flatten)]
    pub note: Note,
    /// The author's label: its display name, with its short key when the
    /// name does not tell it apart (see `names`).
    pub author_label: String,
    /// Another member bears the same name.
    pub name_ambiguous: bool,
    /// The name is that of a pin of another key.
    pub pin_mismatch: bool,
}

/// Notes with their authors' labels (the names as of now).
pub(crate) fn shown(client: &MeshClient, pins: &Pins, notes: Vec<Note>) -> Vec<(ShownNote, Label)> {
    let labels = client.with_state(|s| {
        let all = s.sender_labels(pins);
        notes
            .iter()
            .map(|n| names::label_hex(s, &all, &n.author.to_hex()))
            .collect::<Vec<_>>()
    });
    notes
        .into_iter()
        .zip(labels)
        .map(|(note, label)| {
            (
                ShownNote {
                    author_label: author_text(&note, &label),
                    name_ambiguous: label.ambiguous,
                    pin_mismatch: label.pin_mismatch,
                    note,
                },
                label,
            )
        })
        .collect()
}

/// Who wrote `note`: its label, `(left)` after it once its author left the
/// mesh.
fn author_text(note: &Note, label: &Label) -> String {
    if note.departed {
        format!("{} (left)", label.text)
    } else {
        label.text.clone()
    }
}

/// `[infra, db]`, or nothing.
fn tag_text(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", output::printable(&tags.join(", ")))
    }
}

/// Prints notes for people: a line with the short id, author, time and
/// tags, then the first lines of the text, indented; a blank line between
/// notes.
fn print_notes(notes: &[(ShownNote, Label)]) {
    for (i, (n, _)) in notes.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let note = &n.note;
        println!(
            "{}  {}  {} ({}){}",
            output::short(&note.id.to_hex()),
            n.author_label,
            output::ago(note.at_ms),
            local_time(note.at_ms),
            tag_text(&note.tags)
        );
        let text = output::printable(&note.text);
        let lines: Vec<&str> = text.trim_end().lines().collect();
        for line in lines.iter().take(SHOWN_LINES) {
            println!("    {line}");
        }
        if lines.len() > SHOWN_LINES {
            let more = lines.len() - SHOWN_LINES;
            println!(
                "    … ({more} more line{}: `--json` shows the whole note)",
                if more == 1 { "" } else { "s" }
            );
        }
    }
}

/// Shows notes: JSON with `--json`, else `empty` when there are none, else
/// each note; warns about impostors once each.
fn show(g: &Global, notes: Vec<(ShownNote, Label)>, empty: &str) {
    if g.json {
        let out: Vec<&ShownNote> = notes.iter().map(|(n, _)| n).collect();
        output::json(&out);
        return;
    }
    let mut warnings = names::Warnings::default();
    for (_, l) in &notes {
        warnings.check(l);
    }
    if notes.is_empty() {
        if !g.quiet {
            println!("{empty}");
        }
    } else {
        print_notes(&notes);
    }
}

/// Tags to filter by, checked before connecting.
fn memory_tags(tags: &[String]) -> Result<(), Failure> {
    claudemesh_client::memory::normalize_tags(tags)?;
    Ok(())
}

/// ` tagged infra, db`, or nothing.
fn tagged(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(" tagged {}", tags.join(", "))
    }
}

pub async fn remember(g: &Global, a: RememberArgs) -> Outcome {
    let text = read_text(&a.text)?;
    // Refused before connecting when it is not a note.
    validate_note(&text, &a.tags)?;
    let (_home, _mesh, client) = connect(g).await?;
    let note = client.memory_remember(&text, &a.tags).await;
    client.close().await;
    let note = note?;
    if g.json {
        output::json(&note);
    } else if !g.quiet {
        println!("remembered {}", output::short(&note.id.to_hex()));
    }
    Ok(())
}

pub async fn recall(g: &Global, a: RecallArgs) -> Outcome {
    let query = a.query.join(" ");
    // Refused before connecting when it has nothing to look for.
    fts_query(&query)?;
    memory_tags(&a.tags)?;
    let (home, mesh, client) = connect(g).await?;
    let notes = client.memory_recall(&query, &a.tags, a.limit).await;
    let pins = names::pins_or_warn(&home, &mesh.id);
    let notes = notes.map(|n| shown(&client, &pins, n));
    client.close().await;
    let empty = format!(
        "No notes match {:?}{} (`claudemesh memory list` shows the newest).",
        output::printable(&query),
        tagged(&a.tags)
    );
    show(g, notes?, &empty);
    Ok(())
}

pub async fn list(g: &Global, a: ListArgs) -> Outcome {
    memory_tags(&a.tags)?;
    let (home, mesh, client) = connect(g).await?;
    let notes = client.memory_list(&a.tags, a.limit).await;
    let pins = names::pins_or_warn(&home, &mesh.id);
    let notes = notes.map(|n| shown(&client, &pins, n));
    client.close().await;
    let empty = if a.tags.is_empty() {
        "No notes yet (remember one with `claudemesh memory remember <text> --tags a,b`)."
            .to_owned()
    } else {
        format!("No notes{}.", tagged(&a.tags))
    };
    show(g, notes?, &empty);
    Ok(())
}

pub async fn forget(g: &Global, input: &str) -> Outcome {
    // Refused before connecting when it cannot name a note.
    id_prefix(input)?;
    let (_home, _mesh, client) = connect(g).await?;
    let done = client.memory_forget(input.trim()).await;
    client.close().await;
    let id = done?;
    if g.json {
        output::json(&serde_json::json!({ "id": id.to_hex(), "forgotten": true }));
    } else if !g.quiet {
        println!("forgot {}", output::short(&id.to_hex()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_1_to_100() {
        assert_eq!(parse_limit("10"), Ok(10));
        assert_eq!(parse_limit("100"), Ok(100));
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(parse_limit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_read_as_a_list() {
        assert_eq!(tag_text(&[]), "");
        assert_eq!(tag_text(&["infra".into(), "db".into()]), "  [infra, db]");
        assert_eq!(tagged(&["infra".into()]), " tagged infra");
    }
}
