//! Our MCP server in Claude Code's files: its entry under
//! `mcpServers.claudemesh` in `~/.claude.json` (user scope), and with
//! `--allow-tools` its tools pre-approved under `permissions.allow` in
//! `settings.json`.

use std::path::Path;

use serde_json::Value;

use crate::claude::install::entry::{Spelling, Want};

/// The name our MCP server is registered under: Claude Code calls its
/// tools `mcp__claudemesh__<tool>` and its channel `server:claudemesh`.
pub const SERVER: &str = "claudemesh";
/// The tools `claudemesh mcp` exposes (pre-approved by `--allow-tools`).
pub const TOOLS: &[&str] = &[
    "list_peers",
    "send_message",
    "check_messages",
    "message_status",
    "set_summary",
    "set_status",
    "list_topics",
    "join_topic",
    "post_topic",
    "topic_history",
    "list_scheduled",
    "cancel_scheduled",
    "memory_remember",
    "memory_recall",
    "memory_forget",
    "task_create",
    "task_list",
    "task_show",
    "task_claim",
    "task_release",
    "task_complete",
    "state_set",
    "state_get",
    "state_list",
    "state_delete",
    "state_watch",
    "lease_take",
    "lease_list",
    "lease_check",
    "lease_renew",
    "lease_release",
];

/// The manifest's id of the server entry.
pub const ID: &str = "mcp-server";
/// The manifest's ids of pre-approved tools: `allow:<tool>`.
const ALLOW_PREFIX: &str = "allow:";

/// `mcpServers.claudemesh` in `config` (`~/.claude.json`): this binary,
/// run as `[--home DIR] mcp` over stdio.
pub fn entry(config: &Path, sp: &Spelling) -> Want {
    Want::member(
        ID,
        config,
        &["mcpServers", SERVER],
        serde_json::json!({ "type": "stdio", "command": sp.binary, "args": sp.server_args() }),
    )
}

/// The ids of every tool's pre-approval (`--allow-tools`).
pub fn allow_ids() -> impl Iterator<Item = String> {
    TOOLS.iter().map(|t| format!("{ALLOW_PREFIX}{t}"))
}

/// The pre-approval `id` stands for in `settings` (an element of
/// `permissions.allow`); `None` unless `id` is `allow:` and a tool we have.
pub fn allow_entry(id: &str, settings: &Path) -> Option<Want> {
    let tool = id.strip_prefix(ALLOW_PREFIX)?;
    TOOLS.contains(&tool).then_some(())?;
    Some(Want::element(
        id,
        settings,
        &["permissions", "allow"],
        Value::String(format!("mcp__{SERVER}__{tool}")),
    ))
}
