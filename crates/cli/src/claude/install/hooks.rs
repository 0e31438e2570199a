//! The status hooks in Claude Code's `settings.json`: `claudemesh hook
//! working` on `UserPromptSubmit` and `claudemesh hook idle` on `Stop`, so
//! the session's status follows Claude Code's (`crate::claude::hooks` is
//! what they run).

use std::path::Path;

use serde_json::Value;

use crate::claude::install::entry::{Spelling, Want};

/// The manifest's id of the hook run when a prompt is submitted.
pub const WORKING: &str = "hook-working";
/// The manifest's id of the hook run when Claude Code stops.
pub const IDLE: &str = "hook-idle";

/// The hook `id` stands for in `settings`; `None` for another id.
pub fn entry(id: &str, settings: &Path, sp: &Spelling) -> Option<Want> {
    let (event, words) = match id {
        WORKING => ("UserPromptSubmit", "hook working"),
        IDLE => ("Stop", "hook idle"),
        _ => return None,
    };
    Some(Want::element(
        id,
        settings,
        &["hooks", event],
        hook_value(sp.command(words)),
    ))
}

fn hook_value(command: String) -> Value {
    serde_json::json!({ "hooks": [{ "type": "command", "command": command }] })
}
