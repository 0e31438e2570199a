//! The `claudemesh mcp` servers running on this device, as files in
//! `<home>/run/`: each server writes `mcp-<pid>.json` (its mesh, session
//! name, directory, parent process, link state, peers online, unread) and
//! rewrites it at least every [`HEARTBEAT`]; on unix it also listens on
//! `mcp-<pid>.sock` for the hooks' requests ([`HookRequest`]: a status
//! change, or what to add to the conversation). `claudemesh hook …` and
//! `claudemesh status-line`, which Claude Code runs beside the server, find
//! the server of their own Claude Code session here — without the network,
//! because the status line runs often and a hook must never slow a prompt.
//!
//! Which server is "ours": Claude Code is the parent of its MCP servers and
//! an ancestor of its hooks (they run through a shell), so the entry whose
//! parent is one of our ancestors wins; failing that, the entries started in
//! the directory Claude Code reports ([`Own`] says which it was).

use std::path::{Path, PathBuf};
use std::time::Duration;

use claudemesh_client::home::write_atomic;
use serde::{Deserialize, Serialize};

/// How often a running server rewrites its entry.
pub const HEARTBEAT: Duration = Duration::from_secs(20);

/// An entry older than this is a server that died without cleaning up.
const STALE_MS: u64 = 3 * 20_000 + 5_000;

/// What a running `claudemesh mcp` says about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunEntry {
    /// The server's process id.
    pub pid: u32,
    /// Its parent's (Claude Code's) process id.
    pub ppid: u32,
    /// The directory it started in.
    pub cwd: String,
    /// The mesh's name (empty before a mesh is joined).
    pub mesh: String,
    /// The session's name.
    pub name: String,
    /// `connecting`, `up`, `down`, or `no-mesh`.
    pub link: String,
    /// The session's status (`idle`, `working`, `dnd`).
    pub status: String,
    /// Other members online.
    pub peers_online: u64,
    /// Unread messages in this device's inbox for the mesh.
    pub unread: u64,
    /// Unix ms of the last write.
    pub updated_ms: u64,
}

/// The directory of the entries.
pub fn run_dir(home_root: &Path) -> PathBuf {
    home_root.join("run")
}

fn entry_path(home_root: &Path, pid: u32) -> PathBuf {
    run_dir(home_root).join(format!("mcp-{pid}.json"))
}

/// The socket a server listens on for status changes.
pub fn socket_path(home_root: &Path, pid: u32) -> PathBuf {
    run_dir(home_root).join(format!("mcp-{pid}.sock"))
}

/// This running server's entry: written on [`Registration::write`],
/// removed (with the socket) on drop.
#[derive(Debug)]
pub struct Registration {
    home_root: PathBuf,
    pid: u32,
}

impl Registration {
    /// Claims `mcp-<pid>` in the run directory (made private if new).
    pub fn new(home_root: &Path) -> std::io::Result<Registration> {
        let dir = run_dir(home_root);
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Registration {
            home_root: home_root.to_path_buf(),
            pid: std::process::id(),
        })
    }

    /// Writes the entry atomically (a reader never sees half of it), 0600
    /// like everything else in the home (the run directory is 0700).
    pub fn write(&self, entry: &RunEntry) -> std::io::Result<()> {
        let path = entry_path(&self.home_root, self.pid);
        let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        write_atomic(&path, &bytes, 0o600)
    }

    /// The socket path for this server.
    pub fn socket(&self) -> PathBuf {
        socket_path(&self.home_root, self.pid)
    }
}

impl Registration {
    /// Removes the entry and the socket (also done on drop): hooks and the
    /// status line stop seeing this server, and its name is free again.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(entry_path(&self.home_root, self.pid));
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Every live entry (stale ones are removed on the way).
pub fn live_entries(home_root: &Path) -> Vec<RunEntry> {
    let Ok(dir) = std::fs::read_dir(run_dir(home_root)) else {
        return Vec::new();
    };
    let now = claudemesh_client::client::now_ms();
    let mut out = Vec::new();
    for item in dir.flatten() {
        let path = item.path();
        let name = item.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("mcp-") && name.ends_with(".json")) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match serde_json::from_slice::<RunEntry>(&bytes) {
            Ok(e) if is_live(&e, now) => out.push(e),
            Ok(e) => {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(socket_path(home_root, e.pid));
            }
            Err(_) => {}
        }
    }
    out.sort_by_key(|e| e.pid);
    out
}

/// Whether an entry's server still runs. Where processes can be looked up
/// (`/proc`), by its pid: a suspended laptop leaves a live server's entry
/// old, and a killed server (Claude Code ends servers with SIGTERM) leaves
/// a fresh one. Elsewhere by the heartbeat alone.
fn is_live(e: &RunEntry, now_ms: u64) -> bool {
    let proc_dir = Path::new("/proc");
    if proc_dir.join("self").exists() {
        // A pid reused by another process a day later is not our server.
        return proc_dir.join(e.pid.to_string()).exists()
            && now_ms.saturating_sub(e.updated_ms) <= 24 * 3600 * 1000;
    }
    now_ms.saturating_sub(e.updated_ms) <= STALE_MS
}

/// The process ids above this one, nearest first (empty where unknown).
/// On Linux only the chain's own `/proc/<pid>/stat` files are read (the
/// status line runs often); elsewhere one `ps` lists every process.
fn ancestors() -> Vec<u32> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        let table = if Path::new("/proc/self/stat").exists() {
            None
        } else {
            Some(ps_table())
        };
        let parent_of = |pid: u32| match &table {
            None => proc_parent(pid),
            Some(t) => t.iter().find(|(p, _)| *p == pid).map(|(_, pp)| *pp),
        };
        let mut pid = std::os::unix::process::parent_id();
        while pid > 1 && out.len() < 64 && !out.contains(&pid) {
            out.push(pid);
            match parent_of(pid) {
                Some(parent) => pid = parent,
                None => break,
            }
        }
    }
    out
}

/// A process's parent from `/proc/<pid>/stat` ("pid (comm) state ppid …";
/// comm may hold spaces and parentheses).
#[cfg(unix)]
fn proc_parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after) = stat.rsplit_once(')')?;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// (pid, parent pid) of every process, from `ps`.
#[cfg(unix)]
fn ps_table() -> Vec<(u32, u32)> {
    let Ok(out) = std::process::Command::new("ps")
        .args(["-A", "-o", "pid=,ppid="])
        .stderr(std::process::Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// The entries of this process's Claude Code session: by ancestry, else by
/// directory (`cwd` as Claude Code reports it, else ours).
pub fn own_entries(home_root: &Path, cwd: Option<&str>) -> Vec<RunEntry> {
    own_session(home_root, cwd).entries
}

/// The servers of this process's Claude Code session, and how sure that is.
#[derive(Debug, Default)]
pub struct Own {
    pub entries: Vec<RunEntry>,
    /// Found by ancestry, or the only server started in the directory:
    /// these are this session's. Two servers started in one directory and
    /// none by ancestry may be another Claude Code's (a hook must not show
    /// this session another's messages, or mark them shown).
    pub certain: bool,
}

/// [`own_entries`], with how sure it is.
pub fn own_session(home_root: &Path, cwd: Option<&str>) -> Own {
    let entries = live_entries(home_root);
    if entries.is_empty() {
        return Own::default();
    }
    // The nearest ancestor that started servers is our Claude Code: a
    // session started from inside another (`claude -p` in its shell) must
    // not set the outer one's status.
    for pid in ancestors() {
        let by_parent: Vec<RunEntry> = entries.iter().filter(|e| e.ppid == pid).cloned().collect();
        if !by_parent.is_empty() {
            return Own {
                entries: by_parent,
                certain: true,
            };
        }
    }
    let here = cwd.map(str::to_owned).or_else(|| {
        std::env::current_dir()
            .ok()
            .map(|d| d.to_string_lossy().into_owned())
    });
    let entries: Vec<RunEntry> = entries
        .into_iter()
        .filter(|e| Some(&e.cwd) == here.as_ref())
        .collect();
    Own {
        certain: entries.len() == 1,
        entries,
    }
}

/// One request of a hook to a server, one JSON line each way: an
/// [`InjectRequest`] (`"op": "inject"`), or without `op` a
/// [`StatusRequest`] (what `hook working|idle` sent before there was
/// injection; still served).
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HookRequest {
    Inject(InjectRequest),
    Status(StatusRequest),
}

/// A status request to a server, answered `{"ok":true}` (or
/// `{"ok":true,"kept":"dnd"}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusRequest {
    /// `working` or `idle`.
    pub status: String,
}

/// What a hook asks a server for: what to add to Claude Code's
/// conversation at `event` (and the status that goes with it). Answered
/// with an [`InjectAnswer`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InjectRequest {
    pub op: InjectOp,
    pub event: InjectEvent,
    /// Claude Code's `stop_hook_active`: this turn already goes on because
    /// a Stop hook blocked it (never block again then).
    #[serde(default)]
    pub stop_hook_active: bool,
    /// Claude Code's `source` for SessionStart (`startup`, `resume`,
    /// `clear`, `compact`); empty otherwise.
    #[serde(default)]
    pub source: String,
}

/// The `op` of an [`InjectRequest`] (its only value, `inject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectOp {
    Inject,
}

/// The Claude Code event an [`InjectRequest`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectEvent {
    /// `UserPromptSubmit`: unread messages as context; status `working`.
    Prompt,
    /// `Stop`: block once on unread `now` messages; else status `idle`.
    Stop,
    /// `SessionStart`: how many are unread.
    SessionStart,
}

/// A server's answer to an [`InjectRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectAnswer {
    pub ok: bool,
    /// Text to add to the conversation (prompt, session start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Why the turn goes on (stop): the messages that cannot wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_reason: Option<String>,
    /// Unread messages for the session still waiting after this answer.
    #[serde(default)]
    pub unread: u64,
    /// Why nothing could be said (a malformed request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_status_request_and_the_inject_request_both_parse() {
        let old: HookRequest = serde_json::from_str(r#"{"status":"working"}"#).unwrap();
        assert!(matches!(old, HookRequest::Status(r) if r.status == "working"));
        let new: HookRequest = serde_json::from_str(
            r#"{"op":"inject","event":"session_start","stop_hook_active":false,"source":"resume"}"#,
        )
        .unwrap();
        match new {
            HookRequest::Inject(r) => {
                assert_eq!(r.event, InjectEvent::SessionStart);
                assert_eq!(r.source, "resume");
            }
            other => panic!("{other:?}"),
        }
        let stop: HookRequest = serde_json::from_str(r#"{"op":"inject","event":"stop"}"#).unwrap();
        assert!(matches!(stop, HookRequest::Inject(r) if !r.stop_hook_active));
        assert!(serde_json::from_str::<HookRequest>(r#"{"op":"inject","event":"x"}"#).is_err());
        assert!(serde_json::from_str::<HookRequest>("{}").is_err());
    }

    #[test]
    fn an_answer_leaves_out_what_it_does_not_have() {
        let a = InjectAnswer {
            ok: true,
            unread: 2,
            ..InjectAnswer::default()
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"ok":true,"unread":2}"#
        );
    }
}
