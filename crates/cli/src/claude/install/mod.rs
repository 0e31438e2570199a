//! `claudemesh install` and `claudemesh uninstall`: what claudemesh adds to
//! Claude Code's own files, and taking exactly that out again.
//!
//! Every JSON file is parsed with its key order kept, backed up beside
//! itself before it changes, and replaced atomically with its permissions
//! kept. Install only adds: it never replaces something that is not its own
//! without `--force`, and running it again changes nothing. Uninstall takes
//! out only entries that are still exactly as install wrote them; when what
//! is left is the file as it was before install, it writes back the file's
//! original bytes.
//!
//! # Layout
//!
//! What it installs, one file each:
//! - `mcp_server`: our MCP server in `~/.claude.json`, and the tools
//!   `--allow-tools` pre-approves in `settings.json`.
//! - `hooks`: the hooks in `settings.json` (status, and messages where
//!   channels are off).
//! - `status_line`: the status line in `settings.json` (`--status-line`).
//! - `skill`: `~/.claude/skills/claudemesh/SKILL.md`.
//! - `manifest`: the record of all of it, `<home>/claude-install.json`.
//!
//! The shared machinery: `paths` (where Claude Code keeps its files, also
//! for `launch`), `entry` (one entry and how our commands are spelled),
//! `json` (editing a JSON document), `files` (atomic writes, backups,
//! retries), `report` (what is printed). The two commands:
//! `apply` (install) and `undo` (uninstall).

pub mod apply;
pub mod entry;
pub mod files;
pub mod hooks;
pub mod json;
pub mod manifest;
pub mod mcp_server;
pub mod paths;
pub mod report;
pub mod skill;
pub mod status_line;
pub mod undo;
