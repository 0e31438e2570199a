//! Where Claude Code keeps the files claudemesh edits: `~/.claude.json`,
//! `~/.claude/settings.json` and the skill directory, or the same under
//! `$CLAUDE_CONFIG_DIR`.

use std::path::{Path, PathBuf};

use crate::claude::install::files::absolute;
use crate::claude::install::mcp_server::SERVER;
use crate::exit::{self, Failure};

/// Claude Code's files that install touches.
#[derive(Debug, Clone)]
pub struct ClaudePaths {
    /// `~/.claude`, or `$CLAUDE_CONFIG_DIR`.
    pub dir: PathBuf,
    /// `~/.claude.json` (user-scope MCP servers), or
    /// `$CLAUDE_CONFIG_DIR/.claude.json`.
    pub config: PathBuf,
    /// `<dir>/settings.json` (hooks, status line, permissions).
    pub settings: PathBuf,
    /// `<dir>/skills/claudemesh/SKILL.md`.
    pub skill: PathBuf,
}

impl ClaudePaths {
    /// Where Claude Code keeps its files for this user.
    ///
    /// `CLAUDE_CONFIG_DIR` moves Claude Code's configuration directory
    /// (https://code.claude.com/docs/en/env-vars, "CLAUDE_CONFIG_DIR"), and
    /// `.claude.json` moves with it: Claude Code then reads and writes
    /// `$CLAUDE_CONFIG_DIR/.claude.json`, not `~/.claude.json`
    /// (anthropics/claude-code#24479: with `CLAUDE_CONFIG_DIR=~/.claude`,
    /// "Claude uses `~/.claude/.claude.json`"). Set but empty counts as
    /// unset. Without it: `~/.claude/` and `~/.claude.json`.
    pub fn find() -> Result<ClaudePaths, Failure> {
        let relocated = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty());
        let (dir, config) = match relocated {
            Some(d) => {
                let dir = absolute(Path::new(&d))?;
                let config = dir.join(".claude.json");
                (dir, config)
            }
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        Failure::new(exit::IO, "cannot find your home directory: HOME is not set")
                            .hint("set HOME, or CLAUDE_CONFIG_DIR to Claude Code's configuration directory")
                    })?;
                let home = absolute(Path::new(&home))?;
                (home.join(".claude"), home.join(".claude.json"))
            }
        };
        Ok(ClaudePaths {
            settings: dir.join("settings.json"),
            skill: dir.join("skills").join(SERVER).join("SKILL.md"),
            dir,
            config,
        })
    }
}
