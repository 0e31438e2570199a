//! `claudemesh hook prompt|stop|session-start`, which Claude Code runs on
//! `UserPromptSubmit`, `Stop` and `SessionStart` (install puts them in
//! `settings.json`): asks this session's `claudemesh mcp` server, over its
//! socket in `<home>/run/`, what to add to the conversation (the server's
//! `inject`), and prints it the way Claude Code takes it. That is how
//! messages reach a session where channels are off. The server also sets
//! the session's status: `working` on a prompt, `idle` when the turn ends.
//! `working` and `idle` are the old names of `prompt` and `stop`, kept for
//! installs made before (they now do the same).
//!
//! # Claude Code's hook input and output, as relied on here
//!
//! From Claude Code's hooks reference
//! (<https://docs.anthropic.com/en/docs/claude-code/hooks>, now
//! <https://code.claude.com/docs/en/hooks>):
//! - stdin is one JSON object: `session_id`, `transcript_path`, `cwd`,
//!   `hook_event_name`, and per event `prompt` (UserPromptSubmit; never
//!   read here), `stop_hook_active` (Stop: true when Claude already goes
//!   on because a Stop hook blocked; a hook must then let it stop),
//!   `source` (SessionStart: `startup`, `resume`, `clear`, `compact`).
//! - exit 0 with JSON on stdout:
//!   `{"hookSpecificOutput":{"hookEventName":"UserPromptSubmit"|"SessionStart","additionalContext":"…"}}`
//!   adds the text to Claude's context; from a Stop hook
//!   `{"decision":"block","reason":"…"}` keeps Claude working with the
//!   reason as what it is told next. Plain stdout of these two events is
//!   added to the context too, so nothing else is printed.
//! - another exit code is an error shown to the user (2 blocks the
//!   prompt): a hook here always exits 0.
//!
//! Measured by others, not in the reference: 10 000 characters of
//! additionalContext arrived whole and 50 000 were cut to a ~2 000
//! character preview
//! (<https://dev.to/rulestack/6-of-6-prompts-a-claude-code-userpromptsubmit-hook-erased-were-still-in-the-transcript-and-15m2>),
//! hence the server's 8 000 cap; Claude Code itself ends a turn after
//! several consecutive Stop blocks and says to check `stop_hook_active`
//! (<https://github.com/anthropics/claude-plugins-official/issues/5312>;
//! the maintainers on the loop guard:
//! <https://github.com/anthropics/claude-code/issues/2956>).

use std::path::PathBuf;
#[cfg(unix)]
use std::time::Duration;

use serde_json::{Value, json};

use crate::claude::input::claude_input;
#[cfg(unix)]
use crate::claude::sessions::socket_path;
use crate::claude::sessions::{
    HookRequest, InjectAnswer, InjectEvent, InjectOp, InjectRequest, StatusRequest, own_session,
};
use crate::exit::Outcome;
use crate::global::{Global, open_home};

/// The Claude Code event a hook runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HookEvent {
    /// A prompt was submitted (`UserPromptSubmit`): unread messages are added as context; status working
    #[value(alias = "working")]
    Prompt,
    /// The turn would end (`Stop`): it goes on once for unread `now` messages; else status idle
    #[value(alias = "idle")]
    Stop,
    /// The session started (`SessionStart`): says how many messages are unread
    SessionStart,
    /// A file is about to be edited (`PreToolUse` of Edit, Write, MultiEdit, NotebookEdit): warns, or with --enforce refuses, when another session holds a lease on it
    PreEdit,
}

impl HookEvent {
    /// What the server is asked to add for this event (`None`: the event
    /// is not one the server injects for).
    fn inject(self) -> Option<InjectEvent> {
        match self {
            HookEvent::Prompt => Some(InjectEvent::Prompt),
            HookEvent::Stop => Some(InjectEvent::Stop),
            HookEvent::SessionStart => Some(InjectEvent::SessionStart),
            HookEvent::PreEdit => None,
        }
    }

    /// The status the event implies, for a server that is only told it.
    fn status(self) -> Option<&'static str> {
        match self {
            HookEvent::Prompt => Some("working"),
            HookEvent::Stop => Some("idle"),
            HookEvent::SessionStart | HookEvent::PreEdit => None,
        }
    }
}

/// `claudemesh hook prompt|stop|session-start`. It never fails the hook:
/// Claude Code would show the failure on every prompt, so every problem
/// (no server, a server that does not answer within 2 s) is a line on
/// stderr with `-v` only, nothing on stdout, and exit 0.
pub async fn hook(g: &Global, event: HookEvent, enforce: bool) -> Outcome {
    let input = claude_input();
    let Some(inject_event) = event.inject() else {
        return crate::claude::lease_hook::pre_edit(g, &input, enforce).await;
    };
    let home = match open_home(g) {
        Ok(h) => h,
        Err(f) => {
            tracing::info!("hook: {}", f.message);
            return Ok(());
        }
    };
    let own = own_session(home.root(), input.dir());
    if own.entries.is_empty() {
        tracing::info!("hook: no claudemesh mcp server of this session is running");
        return Ok(());
    }
    let inject = HookRequest::Inject(InjectRequest {
        op: InjectOp::Inject,
        event: inject_event,
        stop_hook_active: input.stop_hook_active(),
        source: input.source().to_owned(),
    });
    let mut asks = tokio::task::JoinSet::new();
    for e in &own.entries {
        // Servers that may be another Claude Code's are only told the
        // status: this session must not show (or mark) their messages.
        let request = if own.certain {
            line_of(&inject)
        } else {
            match event.status() {
                Some(s) => status_line(s),
                None => continue,
            }
        };
        let root = home.root().to_path_buf();
        let pid = e.pid;
        asks.spawn(async move { (pid, talk(root, pid, request).await) });
    }
    let mut answers = Vec::new();
    while let Some(done) = asks.join_next().await {
        match done {
            Ok((pid, Ok(line))) => match serde_json::from_str::<InjectAnswer>(&line) {
                Ok(a) if own.certain => answers.push((pid, a)),
                Ok(_) => {}
                Err(e) => tracing::info!(pid, "hook: the server's answer is not one: {e}"),
            },
            Ok((pid, Err(err))) => {
                tracing::info!(pid, "hook: cannot reach the server: {err}");
            }
            Err(e) => tracing::info!("hook: {e}"),
        }
    }
    answers.sort_by_key(|(pid, _)| *pid);
    let answers: Vec<InjectAnswer> = answers.into_iter().map(|(_, a)| a).collect();
    if let Some(out) = output(event, &answers) {
        use std::io::Write as _;
        // A closed stdout is Claude Code's business, not a failure here.
        let _ = writeln!(std::io::stdout(), "{out}");
    }
    Ok(())
}

/// What Claude Code is to read on stdout for the servers' answers, if
/// anything (see the module's notes on the shapes).
pub fn output(event: HookEvent, answers: &[InjectAnswer]) -> Option<Value> {
    let joined = |pick: fn(&InjectAnswer) -> Option<&String>| -> Option<String> {
        let parts: Vec<&str> = answers
            .iter()
            .filter(|a| a.ok)
            .filter_map(pick)
            .map(String::as_str)
            .filter(|t| !t.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    };
    match event {
        HookEvent::Prompt | HookEvent::SessionStart => {
            let context = joined(|a| a.context.as_ref())?;
            let name = if event == HookEvent::Prompt {
                "UserPromptSubmit"
            } else {
                "SessionStart"
            };
            Some(json!({
                "hookSpecificOutput": {"hookEventName": name, "additionalContext": context}
            }))
        }
        HookEvent::Stop => {
            let reason = joined(|a| a.block_reason.as_ref())?;
            Some(json!({"decision": "block", "reason": reason}))
        }
        HookEvent::PreEdit => None,
    }
}

fn status_line(status: &str) -> Vec<u8> {
    line_of(&HookRequest::Status(StatusRequest {
        status: status.to_owned(),
    }))
}

fn line_of(req: &HookRequest) -> Vec<u8> {
    // Serializing these plain structs cannot fail; an empty line would be
    // answered as a bad request.
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Sends one request line to server `pid` and reads its answer line, all
/// within 2 s.
#[cfg(unix)]
async fn talk(home_root: PathBuf, pid: u32, request: Vec<u8>) -> std::io::Result<String> {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut sock = tokio::net::UnixStream::connect(socket_path(&home_root, pid)).await?;
        sock.write_all(&request).await?;
        let mut answer = String::new();
        // An answer holds at most a capped context: 1 MiB is plenty.
        tokio::io::BufReader::new(sock.take(1 << 20))
            .read_line(&mut answer)
            .await?;
        Ok(answer)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 2 s"))?
}

#[cfg(not(unix))]
async fn talk(_home_root: PathBuf, _pid: u32, _request: Vec<u8>) -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "hooks reach the MCP server over a unix socket, which this platform lacks",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(context: Option<&str>, block: Option<&str>) -> InjectAnswer {
        InjectAnswer {
            ok: true,
            context: context.map(str::to_owned),
            block_reason: block.map(str::to_owned),
            ..InjectAnswer::default()
        }
    }

    #[test]
    fn each_event_prints_the_shape_claude_code_reads() {
        assert_eq!(
            output(HookEvent::Prompt, &[answer(Some("m"), None)]),
            Some(
                json!({"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": "m"}})
            )
        );
        assert_eq!(
            output(HookEvent::SessionStart, &[answer(Some("2 unread"), None)]),
            Some(
                json!({"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": "2 unread"}})
            )
        );
        assert_eq!(
            output(HookEvent::Stop, &[answer(None, Some("urgent"))]),
            Some(json!({"decision": "block", "reason": "urgent"}))
        );
    }

    #[test]
    fn nothing_to_say_prints_nothing() {
        assert_eq!(output(HookEvent::Prompt, &[]), None);
        assert_eq!(output(HookEvent::Prompt, &[answer(None, None)]), None);
        assert_eq!(output(HookEvent::Prompt, &[answer(Some(""), None)]), None);
        // A Stop hook blocks only on a reason, never on context.
        assert_eq!(output(HookEvent::Stop, &[answer(Some("x"), None)]), None);
        let refused = InjectAnswer {
            ok: false,
            context: Some("x".into()),
            ..InjectAnswer::default()
        };
        assert_eq!(output(HookEvent::Prompt, &[refused]), None);
    }

    #[test]
    fn two_servers_answers_are_joined() {
        let out = output(
            HookEvent::Prompt,
            &[
                answer(Some("a"), None),
                answer(None, None),
                answer(Some("b"), None),
            ],
        );
        assert_eq!(
            out.unwrap()["hookSpecificOutput"]["additionalContext"],
            "a\n\nb"
        );
    }

    #[test]
    fn the_old_names_still_parse() {
        use clap::ValueEnum as _;
        assert_eq!(HookEvent::from_str("working", false), Ok(HookEvent::Prompt));
        assert_eq!(HookEvent::from_str("idle", false), Ok(HookEvent::Stop));
        assert_eq!(
            HookEvent::from_str("session-start", false),
            Ok(HookEvent::SessionStart)
        );
        assert_eq!(HookEvent::from_str("prompt", false), Ok(HookEvent::Prompt));
    }
}
