//! `claudemesh task …` (`create`, `list`, `show`, `claim`, `release`,
//! `complete`, `delete`): work items sealed to the mesh that members claim
//! and complete, the broker deciding who got one first without reading it.
//! What a task is, how it is sealed, synced and arbitrated is the client's
//! ([`claudemesh_client::tasks`]); this file reads the command line and
//! shows tasks, for people and (`--json`) for scripts, and for the MCP
//! tools (`task_*`).
//!
//! A task is a peer's words: its title, body and result are shown without
//! control characters (no terminal escapes).

use std::io::Read as _;

use chrono::Local;
use clap::{Args, Subcommand};
use claudemesh_client::MeshClient;
use claudemesh_client::client::now_ms;
use claudemesh_client::tasks::{Task, TaskDraft, TaskFilter, TaskPriority, task_id_prefix};
use claudemesh_proto::frames::TaskPhase;

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::mesh::connect;
use crate::output;
use crate::policy::{Request, Verb};
use crate::schedule::{local_time, parse_at, parse_in};

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Create a task for the mesh (sealed: the broker cannot read it)
    Create(CreateArgs),
    /// The mesh's tasks: open and claimed ones unless --status says otherwise
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// One task, whole
    Show {
        /// Its id (at least its first 4 hex digits, as `task list` shows it)
        id: String,
    },
    /// Claim a task: of members claiming it at once, exactly one gets it
    Claim {
        /// Its id (at least its first 4 hex digits)
        id: String,
    },
    /// Give a claimed task back, open for others
    Release {
        /// Its id (at least its first 4 hex digits)
        id: String,
        /// Take it from another member's claim (its creator, an owner or an admin)
        #[arg(long)]
        force: bool,
    },
    /// Mark a task done, with what came of it
    #[command(visible_alias = "done")]
    Complete {
        /// Its id (at least its first 4 hex digits)
        id: String,
        /// What came of it (at most 8 KiB); "-" reads it from stdin
        #[arg(long, value_name = "TEXT")]
        result: Option<String>,
        /// Complete it though another member claimed it (its creator, an owner or an admin)
        #[arg(long)]
        force: bool,
    },
    /// Delete a task for everyone (its creator, an owner or an admin)
    Delete {
        /// Its id (at least its first 4 hex digits)
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What is to be done, one line (1-256 bytes)
    pub title: String,
    /// More detail (at most 8 KiB); "-" reads it from stdin
    #[arg(long, value_name = "TEXT")]
    pub body: Option<String>,
    /// The peer it is meant for (a name or key); anyone may still claim it
    #[arg(long, value_name = "PEER")]
    pub assignee: Option<String>,
    /// low, normal (the default), high or urgent
    #[arg(long, value_parser = parse_priority)]
    pub priority: Option<TaskPriority>,
    /// Tags (comma-separated; at most 16, each 1-32 of A-Z a-z 0-9 _ . -)
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// When it is due: an RFC 3339 time, HH:MM, "tomorrow HH:MM", or a
    /// duration from now (2h, 3d)
    #[arg(long, value_name = "TIME")]
    pub due: Option<String>,
    /// Seal it to a topic's members (they alone see and take it on) instead
    /// of the whole mesh
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// open, claimed, done or all (default: open and claimed)
    #[arg(long, value_parser = parse_status)]
    pub status: Option<StatusFilter>,
    /// Only tasks meant for, or held by, this peer ("me" for yourself)
    #[arg(long, value_name = "PEER")]
    pub assignee: Option<String>,
    /// Only tasks with every one of these tags (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Only the tasks sealed to this topic
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
}

/// `--status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// One phase.
    One(TaskPhase),
    /// Every task.
    All,
}

impl StatusFilter {
    /// The phases a [`TaskFilter`] takes (empty: open and claimed).
    pub fn phases(self) -> Vec<TaskPhase> {
        match self {
            StatusFilter::One(p) => vec![p],
            StatusFilter::All => vec![TaskPhase::Open, TaskPhase::Claimed, TaskPhase::Done],
        }
    }
}

/// `--status`: open, claimed, done or all.
pub fn parse_status(text: &str) -> Result<StatusFilter, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(StatusFilter::One(TaskPhase::Open)),
        "claimed" => Ok(StatusFilter::One(TaskPhase::Claimed)),
        "done" => Ok(StatusFilter::One(TaskPhase::Done)),
        "all" => Ok(StatusFilter::All),
        _ => Err("give open, claimed, done or all".into()),
    }
}

/// `--priority`.
fn parse_priority(text: &str) -> Result<TaskPriority, String> {
    text.parse::<TaskPriority>()
        .map_err(|_| "give low, normal, high or urgent".into())
}

/// `--due`: a time (as `send --at` takes it) or a duration from now.
pub fn parse_due(text: &str) -> Result<u64, String> {
    match parse_at(text, &Local::now()) {
        Ok(ms) => Ok(ms),
        Err(at_error) => match parse_in(text) {
            Ok(d) => Ok(now_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
            Err(_) => Err(format!("{at_error}, or a duration from now (2h, 3d)")),
        },
    }
}

impl TaskCmd {
    /// What it asks the policy. Titles and bodies are never targets: the
    /// audit log keeps targets.
    pub fn request(&self) -> Option<Request> {
        let id = |id: &str| {
            task_id_prefix(id).unwrap_or_else(|_| output::printable(id).chars().take(40).collect())
        };
        Some(match self {
            TaskCmd::Create(a) => {
                Request::new(Verb::TaskCreate, topic_target(&a.topic).as_deref(), true)
            }
            TaskCmd::List(a) => {
                Request::new(Verb::TaskList, topic_target(&a.topic).as_deref(), true)
            }
            TaskCmd::Show { id: i } => Request::new(Verb::TaskShow, Some(&id(i)), true),
            TaskCmd::Claim { id: i } => Request::new(Verb::TaskClaim, Some(&id(i)), true),
            TaskCmd::Release { id: i, force } => {
                Request::new(force_or(*force, Verb::TaskRelease), Some(&id(i)), true)
            }
            TaskCmd::Complete { id: i, force, .. } => {
                Request::new(force_or(*force, Verb::TaskComplete), Some(&id(i)), true)
            }
            TaskCmd::Delete { id: i } => Request::new(Verb::TaskDelete, Some(&id(i)), true),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            TaskCmd::Create(a) => create(g, a).await,
            TaskCmd::List(a) => list(g, a).await,
            TaskCmd::Show { id } => {
                let task = with_client(g, &id, async |c, id| c.task_show(&id).await).await?;
                show_one(g, &task);
                Ok(())
            }
            TaskCmd::Claim { id } => {
                let task = with_client(g, &id, async |c, id| c.task_claim(&id).await).await?;
                said(g, &task, "claimed");
                Ok(())
            }
            TaskCmd::Release { id, force } => {
                let task =
                    with_client(g, &id, async |c, id| c.task_release(&id, force).await).await?;
                said(g, &task, "released");
                Ok(())
            }
            TaskCmd::Complete { id, result, force } => {
                let result = result.as_deref().map(read_text).transpose()?;
                let task = with_client(g, &id, async |c, id| {
                    c.task_complete(&id, result.as_deref(), force).await
                })
                .await?;
                said(g, &task, "completed");
                Ok(())
            }
            TaskCmd::Delete { id } => {
                task_id_prefix(&id)?;
                let (_home, _mesh, client) = connect(g).await?;
                let done = client.task_delete(id.trim()).await;
                client.close().await;
                let id = done?;
                if g.json {
                    output::json(&serde_json::json!({ "id": id.to_hex(), "deleted": true }));
                } else if !g.quiet {
                    println!("deleted task {}", output::short(&id.to_hex()));
                }
                Ok(())
            }
        }
    }
}

/// The verb of a forced act (taking a task from another member's claim is
/// destructive to their work), or `plain`.
fn force_or(force: bool, plain: Verb) -> Verb {
    if force { Verb::TaskForce } else { plain }
}

/// Connects, runs `f` on the task `id` names, and closes.
async fn with_client(
    g: &Global,
    id: &str,
    f: impl AsyncFnOnce(&MeshClient, String) -> Result<Task, claudemesh_client::ClientError>,
) -> Result<Task, Failure> {
    // Refused before connecting when it cannot name a task.
    task_id_prefix(id)?;
    let (_home, _mesh, client) = connect(g).await?;
    let done = f(&client, id.trim().to_owned()).await;
    client.close().await;
    Ok(done?)
}

/// A text argument, or stdin for "-".
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

async fn create(g: &Global, a: CreateArgs) -> Outcome {
    let due_ms = match a.due.as_deref() {
        Some(text) => Some(
            parse_due(text)
                .map_err(|e| Failure::new(exit::USAGE, format!("--due {text:?}: {e}")))?,
        ),
        None => None,
    };
    let draft = TaskDraft {
        title: a.title,
        body: a.body.as_deref().map(read_text).transpose()?,
        assignee: a.assignee,
        priority: a.priority,
        tags: a.tags,
        due_ms,
        topic: a.topic,
    };
    let (_home, _mesh, client) = connect(g).await?;
    let task = client.task_create(draft).await;
    client.close().await;
    let task = task?;
    if g.json {
        output::json(&task);
    } else if !g.quiet {
        println!(
            "created task {}{}: {}",
            output::short(&task.id.to_hex()),
            task.topic
                .as_deref()
                .map(|t| format!(" in #{}", output::printable(t)))
                .unwrap_or_default(),
            output::printable(&task.title)
        );
    }
    Ok(())
}

async fn list(g: &Global, a: ListArgs) -> Outcome {
    claudemesh_client::memory::normalize_tags(&a.tags)?;
    let (_home, _mesh, client) = connect(g).await?;
    let tasks = async {
        let assignee = match a.assignee.as_deref() {
            None => None,
            Some("me") => Some(claudemesh_crypto::MemberKey(
                client.with_state(|s| s.my_key()),
            )),
            Some(peer) => Some(claudemesh_client::grants::resolve_member(&client, peer).await?),
        };
        let filter = TaskFilter {
            status: a.status.map(StatusFilter::phases).unwrap_or_default(),
            assignee,
            tags: a.tags.clone(),
            topic: a.topic.clone(),
        };
        client.task_list(&filter).await
    }
    .await;
    client.close().await;
    let tasks = tasks?;
    if g.json {
        output::json(&tasks);
        return Ok(());
    }
    if tasks.is_empty() {
        if !g.quiet {
            println!(
                "No tasks{} (create one with `claudemesh task create <title>`).",
                if a.status.is_some()
                    || a.assignee.is_some()
                    || !a.tags.is_empty()
                    || a.topic.is_some()
                {
                    " match"
                } else {
                    " open"
                }
            );
        }
        return Ok(());
    }
    for t in &tasks {
        println!("{}", line(t));
    }
    Ok(())
}

/// `--topic` as a policy target: `#name` (a name as typed, checked when the
/// command runs; at most 40 printable characters here).
fn topic_target(topic: &Option<String>) -> Option<String> {
    topic.as_deref().map(|t| {
        let name: String = output::printable(t.trim().trim_start_matches('#'))
            .chars()
            .take(40)
            .collect();
        format!("#{name}")
    })
}

/// `[high] ` for priorities other than normal.
fn priority_mark(p: TaskPriority) -> String {
    if p == TaskPriority::Normal {
        String::new()
    } else {
        format!("[{}] ", p.as_str())
    }
}

/// Where a task stands, in words: `open`, `claimed by bob 5m ago`, `done by bob`.
pub fn standing(t: &Task) -> String {
    let who = t
        .holder_name
        .as_deref()
        .map(output::printable)
        .unwrap_or_default();
    let who = if t.holder_refused {
        format!("{who} (your grants refuse them tasks; release it with --force)")
    } else if t.holder_departed && t.status == TaskPhase::Claimed {
        match &t.topic {
            Some(topic) => format!(
                "{who} (left #{} or the mesh: anyone in it may claim it)",
                output::printable(topic)
            ),
            None => format!("{who} (left the mesh: anyone may claim it)"),
        }
    } else {
        who
    };
    match t.status {
        TaskPhase::Open => match &t.assignee_name {
            Some(a) => format!("open, for {}", output::printable(a)),
            None => "open".into(),
        },
        TaskPhase::Claimed => format!("claimed by {who} {}", output::ago(t.updated_at_ms)),
        TaskPhase::Done => format!("done by {who} {}", output::ago(t.updated_at_ms)),
    }
}

/// One task on one line, for listings.
pub fn line(t: &Task) -> String {
    let tags = if t.tags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", output::printable(&t.tags.join(", ")))
    };
    let due = t
        .due_ms
        .filter(|_| t.status != TaskPhase::Done)
        .map(|d| format!("  due {}", local_time(d)))
        .unwrap_or_default();
    let topic = t
        .topic
        .as_deref()
        .map(|topic| format!("#{} ", output::printable(topic)))
        .unwrap_or_default();
    format!(
        "{}  {topic}{}{}  ({}){due}{tags}",
        output::short(&t.id.to_hex()),
        priority_mark(t.priority),
        output::printable(&t.title),
        standing(t)
    )
}

/// A task, whole.
fn show_one(g: &Global, t: &Task) {
    if g.json {
        output::json(t);
        return;
    }
    println!(
        "{}  {}",
        output::short(&t.id.to_hex()),
        output::printable(&t.title)
    );
    println!("  status:   {} (version {})", standing(t), t.version);
    println!("  priority: {}", t.priority.as_str());
    if let Some(topic) = &t.topic {
        println!(
            "  topic:    #{} (sealed to its members)",
            output::printable(topic)
        );
    }
    println!(
        "  created:  by {} {} ({})",
        output::printable(&t.creator_name),
        output::ago(t.created_at_ms),
        local_time(t.created_at_ms)
    );
    if let Some(a) = &t.assignee_name {
        println!("  for:      {}", output::printable(a));
    }
    if let Some(d) = t.due_ms {
        println!("  due:      {}", local_time(d));
    }
    if !t.tags.is_empty() {
        println!("  tags:     {}", output::printable(&t.tags.join(", ")));
    }
    if let Some(b) = &t.body {
        println!();
        for l in output::printable(b).lines() {
            println!("    {l}");
        }
    }
    if let Some(r) = &t.result {
        println!();
        println!("  result:");
        for l in output::printable(r).lines() {
            println!("    {l}");
        }
    }
}

/// After an act: the task as JSON, or one line saying what was done.
fn said(g: &Global, t: &Task, done: &str) {
    if g.json {
        output::json(t);
    } else if !g.quiet {
        println!(
            "{done} task {}: {}",
            output::short(&t.id.to_hex()),
            output::printable(&t.title)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_priorities_read_as_typed() {
        assert_eq!(parse_status("Open"), Ok(StatusFilter::One(TaskPhase::Open)));
        assert_eq!(parse_status("all").unwrap().phases().len(), 3);
        assert!(parse_status("finished").is_err());
        assert_eq!(parse_priority("urgent"), Ok(TaskPriority::Urgent));
        assert!(parse_priority("asap").is_err());
    }

    #[test]
    fn due_takes_a_time_or_a_duration() {
        let now = now_ms();
        let in_two_hours = parse_due("2h").unwrap();
        assert!(in_two_hours >= now + 7_100_000 && in_two_hours <= now + 7_300_000);
        assert_eq!(parse_due("2026-12-10T09:00:00Z"), Ok(1_796_893_200_000));
        assert!(parse_due("someday").is_err());
    }
}
