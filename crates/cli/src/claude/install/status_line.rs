//! The status line in Claude Code's `settings.json` (`--status-line`):
//! `statusLine` runs `claudemesh status-line` (`crate::claude::status_line`
//! is what it prints).

use std::path::Path;

use crate::claude::install::entry::{Spelling, Want};

/// The manifest's id of the status line.
pub const ID: &str = "status-line";

/// `statusLine` in `settings`.
pub fn entry(settings: &Path, sp: &Spelling) -> Want {
    Want::member(
        ID,
        settings,
        &["statusLine"],
        serde_json::json!({ "type": "command", "command": sp.command("status-line") }),
    )
}
