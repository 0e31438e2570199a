//! The Claude Code integration: everything claudemesh does inside or for
//! Claude Code.
//!
//! # Layout
//!
//! - `install/`: `claudemesh install` and `uninstall`, which edit Claude
//!   Code's files (`install::paths`: where it keeps them).
//! - `mcp/`: `claudemesh mcp`, the MCP server Claude Code runs (tools and
//!   channel pushes).
//! - `sessions`: the running servers of this device, as files in
//!   `<home>/run/`.
//! - `input`: what Claude Code passes a hook or the status line.
//! - `hooks`: `claudemesh hook prompt|stop|session-start`, which tells the
//!   session's server what Claude Code is doing and prints what the server
//!   adds to the conversation (messages where channels are off).
//! - `status_line`: `claudemesh status-line`, Claude Code's status bar.
//! - `launch`: `claudemesh launch`, which starts `claude` with our channel.

pub mod hooks;
pub mod input;
pub mod install;
pub mod launch;
pub mod lease_hook;
pub mod mcp;
pub mod sessions;
pub mod status_line;
