//! The hooks in Claude Code's `settings.json`: `claudemesh hook prompt` on
//! `UserPromptSubmit`, `claudemesh hook stop` on `Stop` and `claudemesh
//! hook session-start` on `SessionStart`, so the session's status follows
//! Claude Code's and messages reach the conversation where channels are
//! off (`crate::claude::hooks` is what they run). The first two keep the
//! ids of the status hooks they replace (`hook working`, `hook idle`), so
//! running install again rewrites an older install's in place.

use std::path::Path;

use serde_json::Value;

use crate::claude::install::entry::{Spelling, Want};

/// The manifest's id of the hook run when a prompt is submitted.
pub const WORKING: &str = "hook-working";
/// The manifest's id of the hook run when Claude Code stops.
pub const IDLE: &str = "hook-idle";
/// The manifest's id of the hook run when a session starts.
pub const SESSION_START: &str = "hook-session-start";
/// The manifest's id of the hook run before a file is edited (warns of
/// another session's lease).
pub const PRE_EDIT: &str = "hook-pre-edit";
/// The same, refusing edits of exclusively leased files
/// (`install --enforce-leases`).
pub const PRE_EDIT_ENFORCE: &str = "hook-pre-edit-enforce";
/// The tools the pre-edit hook runs before (listed one by one: whether
/// `Edit` alone matches `MultiEdit` is not said by the reference).
pub const EDIT_TOOLS: &str = "Edit|Write|MultiEdit|NotebookEdit";

/// Every hook install adds, in the order it adds them.
pub const ALL: [&str; 4] = [WORKING, IDLE, SESSION_START, PRE_EDIT];

/// The hook `id` stands for in `settings`; `None` for another id.
pub fn entry(id: &str, settings: &Path, sp: &Spelling) -> Option<Want> {
    let (event, words) = match id {
        WORKING => ("UserPromptSubmit", "hook prompt"),
        IDLE => ("Stop", "hook stop"),
        SESSION_START => ("SessionStart", "hook session-start"),
        PRE_EDIT | PRE_EDIT_ENFORCE => {
            let words = if id == PRE_EDIT {
                "hook pre-edit"
            } else {
                "hook pre-edit --enforce"
            };
            let mut value = hook_value(sp.command(words));
            value["matcher"] = Value::String(EDIT_TOOLS.into());
            return Some(Want::element(id, settings, &["hooks", "PreToolUse"], value));
        }
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
