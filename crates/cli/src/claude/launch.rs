//! `claudemesh launch`: starts Claude Code (`claude`) with claudemesh's MCP
//! server allowed to push messages into the session as they arrive (its
//! development channel, `--dangerously-load-development-channels
//! server:claudemesh`), and tells that server, through the environment,
//! the session's name, mesh and home. It owns finding `claude` and
//! checking that the server is registered; registering it is `install`'s.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use claudemesh_client::ClientError;
use claudemesh_client::home::{Home, resolve_home};

use crate::exit::Outcome;
use crate::global::Global;
use crate::policy::{Request, Verb};

/// `launch`.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// This session's name, shown to peers (`send <name>` reaches it)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Arguments for `claude`, after `--`
    #[arg(last = true, value_name = "CLAUDE_ARGS")]
    pub claude_args: Vec<std::ffi::OsString>,
}

impl LaunchArgs {
    /// What it asks the policy. It changes nothing itself: the MCP server
    /// of the session it starts asks before each write.
    pub fn request(&self) -> Request {
        Request::new(Verb::Launch, self.name.as_deref(), false)
    }
}
use crate::claude::install::mcp_server::SERVER;
use crate::claude::install::paths::ClaudePaths;
use crate::exit::{self, Failure};

/// Overrides the `claude` binary (a path, or a name looked up on `PATH`).
pub const CLAUDE_BIN_ENV: &str = "CLAUDEMESH_CLAUDE_BIN";
/// The session's name, read by `claudemesh mcp`.
pub const SESSION_NAME_ENV: &str = "CLAUDEMESH_SESSION_NAME";
/// The flag that lets an MCP server push into the session (Claude Code
/// 2.1.80 or later; channels are a research preview).
pub const CHANNELS_FLAG: &str = "--dangerously-load-development-channels";
/// Tells `claudemesh mcp` that its channel is on (this launch passed
/// [`CHANNELS_FLAG`]), so what it pushes is shown and counts as read.
pub const CHANNELS_ENV: &str = "CLAUDEMESH_CHANNELS";

/// `claudemesh launch [--name N] [--mesh M] [-- <claude args>…]`.
pub fn run(g: &Global, a: LaunchArgs) -> Outcome {
    if let Some(name) = &a.name {
        check_name(name)?;
    }
    let claude = find_claude()?;
    warn_if_not_registered();
    warn_if_no_mesh(g);

    let mut cmd = Command::new(&claude);
    cmd.arg(CHANNELS_FLAG)
        .arg(format!("server:{SERVER}"))
        .args(&a.claude_args)
        .env(CHANNELS_ENV, "1");
    if let Some(name) = &a.name {
        cmd.env(SESSION_NAME_ENV, name);
    }
    if let Some(mesh) = &g.mesh {
        cmd.env("CLAUDEMESH_MESH", mesh);
    }
    if let Some(home) = &g.home {
        // The server and the hooks Claude Code starts use this home too.
        let home = std::path::absolute(home).unwrap_or_else(|_| home.clone());
        cmd.env("CLAUDEMESH_HOME", home);
    }
    tracing::info!(claude = %claude.display(), "starting Claude Code");
    exec(cmd, &claude)
}

/// A session name: 1-64 printable characters.
fn check_name(name: &str) -> Result<(), Failure> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) {
        return Err(Failure::new(
            exit::USAGE,
            format!("{name:?} is not a session name: 1-64 printable characters"),
        )
        .hint("e.g. --name api"));
    }
    Ok(())
}

/// `$CLAUDEMESH_CLAUDE_BIN` (a path, or a name on `PATH`), else `claude`
/// on `PATH`.
fn find_claude() -> Result<PathBuf, Failure> {
    let wanted = std::env::var_os(CLAUDE_BIN_ENV)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| OsString::from("claude"));
    let as_path = Path::new(&wanted);
    let found = if as_path.components().count() > 1 || as_path.is_absolute() {
        is_executable(as_path).then(|| as_path.to_owned())
    } else {
        search_path(&wanted)
    };
    found.ok_or_else(|| {
        Failure::new(
            exit::NOT_FOUND,
            format!(
                "cannot find Claude Code: no executable {:?} on PATH{}",
                wanted.to_string_lossy(),
                if std::env::var_os(CLAUDE_BIN_ENV).is_some() {
                    format!(" (from ${CLAUDE_BIN_ENV})")
                } else {
                    String::new()
                }
            ),
        )
        .hint(
            "install Claude Code 2.1.80 or later (https://code.claude.com/docs/en/setup, e.g. `npm install -g @anthropic-ai/claude-code`), log in with `claude`, or set CLAUDEMESH_CLAUDE_BIN to its path",
        )
    })
}

fn search_path(name: &OsString) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
        #[cfg(windows)]
        for ext in ["exe", "cmd", "bat"] {
            let c = candidate.with_extension(ext);
            if c.is_file() {
                return Some(c);
            }
        }
        None
    })
}

fn is_executable(p: &Path) -> bool {
    let Ok(m) = std::fs::metadata(p) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        m.is_file() && m.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        m.is_file()
    }
}

/// Warns when no `mcpServers.claudemesh` is in Claude Code's user or local
/// scope (`.claude.json`) nor in `./.mcp.json`: the session would have no
/// claudemesh. Not an error: Claude Code may find it elsewhere.
fn warn_if_not_registered() {
    let Ok(paths) = ClaudePaths::find() else {
        return;
    };
    let read = |p: &Path| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(p).ok()?).ok()
    };
    let has = |v: &serde_json::Value| v.get("mcpServers").and_then(|m| m.get(SERVER)).is_some();
    let cwd = std::env::current_dir().ok();
    let user = read(&paths.config);
    let in_user = user.as_ref().is_some_and(has);
    let in_local = user.as_ref().zip(cwd.as_ref()).is_some_and(|(u, d)| {
        u.get("projects")
            .and_then(|p| p.get(d.to_string_lossy().as_ref()))
            .is_some_and(has)
    });
    let in_project = cwd
        .as_ref()
        .and_then(|d| read(&d.join(".mcp.json")))
        .is_some_and(|v| has(&v));
    if !(in_user || in_local || in_project) {
        eprintln!(
            "warning: no MCP server named {SERVER} is registered in {} (or ./.mcp.json): the session will not see the mesh",
            paths.config.display()
        );
        eprintln!("hint: run `claudemesh install` first");
    }
}

/// Warns when the home has no mesh to talk in (or `--mesh` names none).
fn warn_if_no_mesh(g: &Global) {
    let Ok(root) = resolve_home(g.home.as_deref()) else {
        return;
    };
    let Ok(home) = Home::open(&root) else {
        return;
    };
    match home.select_mesh(g.mesh.as_deref()) {
        Ok(_) => {}
        Err(
            e @ (ClientError::NoMesh | ClientError::NoSuchMesh(_) | ClientError::AmbiguousMesh(_)),
        ) => {
            eprintln!("warning: {e}");
        }
        Err(_) => {}
    }
}

/// Replaces this process with `claude`, so the terminal and its signals
/// go to it; returns only if that fails.
#[cfg(unix)]
fn exec(mut cmd: Command, claude: &Path) -> Outcome {
    use std::os::unix::process::CommandExt as _;
    let e = cmd.exec();
    Err(
        Failure::new(exit::IO, format!("cannot start {}: {e}", claude.display()))
            .hint("check that it is Claude Code and that it runs"),
    )
}

/// Runs `claude` and exits with its code.
#[cfg(not(unix))]
fn exec(mut cmd: Command, claude: &Path) -> Outcome {
    let status = cmd
        .status()
        .map_err(|e| Failure::new(exit::IO, format!("cannot start {}: {e}", claude.display())))?;
    match status.code() {
        Some(0) => Ok(()),
        code => std::process::exit(code.unwrap_or(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_checked() {
        assert!(check_name("api").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("a\nb").is_err());
    }
}
