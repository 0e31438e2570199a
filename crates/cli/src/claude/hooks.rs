//! `claudemesh hook working|idle`, which Claude Code runs on each prompt
//! and when it stops (install puts these hooks in `settings.json`): tells
//! this session's `claudemesh mcp` server, over its socket in
//! `<home>/run/`, whether the session is working or idle.

use std::path::Path;
#[cfg(unix)]
use std::time::Duration;

use crate::claude::input::claude_input;
use crate::claude::sessions::own_entries;
#[cfg(unix)]
use crate::claude::sessions::{StatusRequest, socket_path};
use crate::exit::Outcome;
use crate::global::{Global, open_home};

/// What a Claude Code hook reports.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HookEvent {
    /// A prompt was submitted (`UserPromptSubmit`)
    Working,
    /// The turn ended (`Stop`)
    Idle,
}

/// `claudemesh hook working|idle`: tells this Claude Code session's server
/// the session's state. It never fails the hook: Claude Code would show the
/// failure on every prompt (and stdout would be added to the prompt), so
/// every problem is a line on stderr with `-v` only, and the exit code is 0.
pub async fn hook(g: &Global, event: HookEvent) -> Outcome {
    let input = claude_input();
    let status = match event {
        HookEvent::Working => "working",
        HookEvent::Idle => "idle",
    };
    let home = match open_home(g) {
        Ok(h) => h,
        Err(f) => {
            tracing::info!("hook: {}", f.message);
            return Ok(());
        }
    };
    let targets = own_entries(home.root(), input.dir());
    if targets.is_empty() {
        tracing::info!("hook: no claudemesh mcp server of this session is running");
    }
    for e in targets {
        if let Err(err) = tell(home.root(), e.pid, status).await {
            tracing::info!(pid = e.pid, "hook: cannot reach the server: {err}");
        }
    }
    Ok(())
}

#[cfg(unix)]
async fn tell(home_root: &Path, pid: u32, status: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let talk = async {
        let mut sock = tokio::net::UnixStream::connect(socket_path(home_root, pid)).await?;
        let mut line = serde_json::to_vec(&StatusRequest {
            status: status.to_owned(),
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        sock.write_all(&line).await?;
        let mut answer = String::new();
        tokio::io::BufReader::new(sock)
            .read_line(&mut answer)
            .await?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(2), talk)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

#[cfg(not(unix))]
async fn tell(_home_root: &Path, _pid: u32, _status: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "hooks reach the MCP server over a unix socket, which this platform lacks",
    ))
}
