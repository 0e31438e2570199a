//! What Claude Code passes a hook or the status line on stdin: JSON with
//! the session's directory, and for hooks the event's own fields. Only the
//! fields used here are read: a hook's input also has `session_id`,
//! `transcript_path`, `hook_event_name` and, for `UserPromptSubmit`, the
//! user's `prompt`, which claudemesh never reads.

use serde::Deserialize;

/// What Claude Code passes a hook or the status line on stdin (the fields
/// used here; the rest is ignored).
#[derive(Debug, Default, Deserialize)]
pub struct ClaudeInput {
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    workspace: Option<Workspace>,
    /// `Stop`: the turn already goes on because a Stop hook blocked it.
    #[serde(default)]
    stop_hook_active: Option<bool>,
    /// `SessionStart`: `startup`, `resume`, `clear` or `compact`.
    #[serde(default)]
    source: Option<String>,
    /// `PreToolUse`: the tool's arguments (`file_path` for Edit, Write and
    /// MultiEdit, `notebook_path` for NotebookEdit).
    #[serde(default)]
    tool_input: Option<ToolInput>,
}

#[derive(Debug, Default, Deserialize)]
struct ToolInput {
    #[serde(default)]
    file_path: Option<String>,
    #[serde(default)]
    notebook_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Workspace {
    #[serde(default)]
    current_dir: Option<String>,
}

/// Reads Claude Code's JSON from stdin when stdin is not a terminal; bad
/// or missing input is no input.
pub fn claude_input() -> ClaudeInput {
    use std::io::{IsTerminal as _, Read as _};
    if std::io::stdin().is_terminal() {
        return ClaudeInput::default();
    }
    let mut text = String::new();
    // A hook's input is small; stop at 1 MiB whatever comes.
    let _ = std::io::stdin().take(1 << 20).read_to_string(&mut text);
    parse(&text)
}

/// Claude Code's JSON; anything else is no input.
pub fn parse(text: &str) -> ClaudeInput {
    serde_json::from_str(text).unwrap_or_default()
}

impl ClaudeInput {
    /// The directory Claude Code reports (`cwd`, else the workspace's).
    pub fn dir(&self) -> Option<&str> {
        self.cwd
            .as_deref()
            .or_else(|| self.workspace.as_ref()?.current_dir.as_deref())
    }

    /// `PreToolUse` of an editing tool: the file it is about to change.
    pub fn edited_file(&self) -> Option<&str> {
        let t = self.tool_input.as_ref()?;
        t.file_path.as_deref().or(t.notebook_path.as_deref())
    }

    /// Whether a Stop hook already continued this turn (false when not
    /// said: a Stop hook may block once).
    pub fn stop_hook_active(&self) -> bool {
        self.stop_hook_active.unwrap_or(false)
    }

    /// Why the session started (`SessionStart`), empty when not said.
    pub fn source(&self) -> &str {
        self.source.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hooks_fields_are_read_and_the_rest_ignored() {
        let i = parse(
            r#"{"session_id":"s","transcript_path":"/t.jsonl","cwd":"/p","hook_event_name":"Stop","stop_hook_active":true,"prompt":"secret"}"#,
        );
        assert_eq!(i.dir(), Some("/p"));
        assert!(i.stop_hook_active());
        assert_eq!(i.source(), "");
        let s = parse(r#"{"hook_event_name":"SessionStart","source":"compact"}"#);
        assert_eq!(s.source(), "compact");
        assert!(!s.stop_hook_active());
        let bad = parse("not json");
        assert_eq!(bad.dir(), None);
        assert!(!bad.stop_hook_active());
    }
}
