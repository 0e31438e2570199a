//! What Claude Code passes a hook or the status line on stdin: JSON with
//! the session's directory. Only the fields used here are read.

use serde::Deserialize;

/// What Claude Code passes a hook or the status line on stdin (the fields
/// used here; the rest is ignored).
#[derive(Debug, Default, Deserialize)]
pub struct ClaudeInput {
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    workspace: Option<Workspace>,
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
    serde_json::from_str(&text).unwrap_or_default()
}

impl ClaudeInput {
    /// The directory Claude Code reports (`cwd`, else the workspace's).
    pub fn dir(&self) -> Option<&str> {
        self.cwd
            .as_deref()
            .or_else(|| self.workspace.as_ref()?.current_dir.as_deref())
    }
}
