//! `claudemesh install` and `claudemesh uninstall`: what claudemesh adds to
//! Claude Code's own files, and taking exactly that out again.
//!
//! It owns the edits to `~/.claude.json` (our MCP server, user scope) and
//! `~/.claude/settings.json` (the status hooks, the status line, tools
//! pre-approved with `--allow-tools`), the skill file
//! `~/.claude/skills/claudemesh/SKILL.md`, and the record of what install
//! added, `<claudemesh home>/claude-install.json`.
//!
//! Every JSON file is parsed with its key order kept, backed up beside
//! itself before it changes, and replaced atomically (a temporary file in
//! the same directory, renamed over it) with its permissions kept. Install
//! only adds: it never replaces something that is not its own without
//! `--force`, and running it again changes nothing. Uninstall takes out
//! only entries that are still exactly as install wrote them; when what is
//! left is the file as it was before install, it writes back the file's
//! original bytes.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use claudemesh_client::home::{ensure_private_dir, resolve_home};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::args::{Global, InstallArgs, UninstallArgs};
use crate::exit::{self, Failure};
use crate::{Outcome, output};

/// The skill file install writes.
pub const SKILL: &str = include_str!("../assets/SKILL.md");
/// The record of what install added, in the claudemesh home.
pub const MANIFEST: &str = "claude-install.json";
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
];
/// What to do after install.
pub const NEXT: &str = "restart Claude Code, or run `claudemesh launch`";

const MANIFEST_VERSION: u32 = 1;
/// Attempts at a file that changes under us (Claude Code rewrites
/// `.claude.json` while it runs).
const ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------
// Where Claude Code keeps its files

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

fn absolute(p: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(p).map_err(|e| {
        Failure::new(
            exit::IO,
            format!("cannot make {} absolute: {e}", p.display()),
        )
    })
}

// ---------------------------------------------------------------------------
// The record of what install added

/// `claude-install.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    /// The JSON files install changed.
    #[serde(default)]
    files: Vec<FileRecord>,
    /// The skill file, if install wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    skill: Option<SkillRecord>,
    /// Directories install created, in the order it created them.
    #[serde(default)]
    dirs: Vec<PathBuf>,
}

/// What install did to one JSON file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileRecord {
    path: PathBuf,
    /// The file did not exist before install.
    created: bool,
    /// SHA-256 (hex) of the file's bytes before claudemesh first changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_sha256: Option<String>,
    /// Copies written before each change, oldest (the original) first.
    #[serde(default)]
    backups: Vec<PathBuf>,
    /// Objects and arrays install created to hold its entries; uninstall
    /// removes each that is empty again.
    #[serde(default)]
    containers: Vec<Vec<String>>,
    /// The entries install put there.
    entries: Vec<Entry>,
}

impl FileRecord {
    fn new(path: &Path) -> FileRecord {
        FileRecord {
            path: path.to_owned(),
            created: false,
            original_sha256: None,
            backups: Vec::new(),
            containers: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// How an entry sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    /// The value of an object member (`mcpServers.claudemesh`).
    Member,
    /// An element appended to an array (`hooks.Stop[]`).
    Element,
}

/// One thing install put in a JSON file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// What it is: `mcp-server`, `hook-working`, `hook-idle`,
    /// `status-line`, `allow:<tool>`.
    id: String,
    kind: Kind,
    /// The member's path, or the array's.
    path: Vec<String>,
    /// Exactly what install wrote.
    value: Value,
    /// The member's value before `--force` replaced it (put back by
    /// uninstall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<Value>,
}

/// The skill file install wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SkillRecord {
    path: PathBuf,
    /// SHA-256 (hex) of what install wrote.
    sha256: String,
    /// Where the file it replaced (`--force`) was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaced: Option<PathBuf>,
}

fn manifest_path(home: &Path) -> PathBuf {
    home.join(MANIFEST)
}

fn load_manifest(home: &Path) -> Result<Option<Manifest>, Failure> {
    let path = manifest_path(home);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failure("read", &path, &e)),
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(exit::IO, format!("{} is damaged: {e}", path.display())).hint(
            "it records what `claudemesh install` added to Claude Code's files; restore it, or move it away and remove those entries by hand",
        )
    })?;
    if m.version > MANIFEST_VERSION {
        return Err(Failure::new(
            exit::IO,
            format!(
                "{} was written by a newer claudemesh (version {})",
                path.display(),
                m.version
            ),
        )
        .hint("upgrade claudemesh"));
    }
    Ok(Some(m))
}

fn save_manifest(home: &Path, m: &Manifest) -> Result<(), Failure> {
    ensure_private_dir(home)?;
    let path = manifest_path(home);
    let mut bytes = serde_json::to_vec_pretty(m)
        .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot encode the manifest: {e}")))?;
    bytes.push(b'\n');
    replace_file(&path, &bytes, Mode::Private, None).map_err(|e| e.failure(&path))
}

fn delete_manifest(home: &Path) -> Result<(), Failure> {
    let path = manifest_path(home);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_failure("remove", &path, &e)),
    }
}

// ---------------------------------------------------------------------------
// What install wants in the files

/// One entry install wants, with the value it has today.
#[derive(Debug, Clone)]
struct Want {
    id: String,
    file: PathBuf,
    kind: Kind,
    path: Vec<String>,
    value: Value,
}

/// How our commands are spelled in Claude Code's files.
#[derive(Debug, Clone)]
struct Spelling {
    /// The running binary, absolute.
    binary: String,
    /// The claudemesh home, when it is not the default one.
    home: Option<String>,
}

impl Spelling {
    fn new(g: &Global) -> Result<Spelling, Failure> {
        let exe = std::env::current_exe().map_err(|e| {
            Failure::new(
                exit::IO,
                format!("cannot find the path of this claudemesh binary: {e}"),
            )
        })?;
        let binary = utf8(&absolute(&exe)?)?;
        let home = match &g.home {
            Some(h) => {
                let h = absolute(h)?;
                let default = std::env::var_os("HOME")
                    .filter(|d| !d.is_empty())
                    .map(|d| absolute(&PathBuf::from(d).join(".claudemesh")))
                    .transpose()?;
                (default.as_deref() != Some(h.as_path()))
                    .then(|| utf8(&h))
                    .transpose()?
            }
            None => None,
        };
        Ok(Spelling { binary, home })
    }

    /// The MCP server's arguments: `[--home DIR] mcp`.
    fn server_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(h) = &self.home {
            args.extend(["--home".to_owned(), h.clone()]);
        }
        args.push("mcp".to_owned());
        args
    }

    /// A shell command line running `claudemesh [--home DIR] <words>`.
    fn command(&self, words: &str) -> String {
        let mut s = sh_quote(&self.binary);
        if let Some(h) = &self.home {
            s.push_str(" --home ");
            s.push_str(&sh_quote(h));
        }
        s.push(' ');
        s.push_str(words);
        s
    }
}

fn utf8(p: &Path) -> Result<String, Failure> {
    p.to_str().map(str::to_owned).ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            format!(
                "{} is not valid UTF-8: Claude Code's JSON files cannot name it",
                p.display()
            ),
        )
        .hint("move claudemesh (or the home) to a path that is UTF-8")
    })
}

/// Quotes a word for a POSIX shell (Claude Code runs hooks and the status
/// line with one), leaving plain paths as they are.
pub fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn hook_value(command: String) -> Value {
    serde_json::json!({ "hooks": [{ "type": "command", "command": command }] })
}

/// The entry `id` stands for, with today's binary and home; `None` for an
/// id this version does not know.
fn want_for(id: &str, paths: &ClaudePaths, sp: &Spelling) -> Option<Want> {
    let member = |file: &Path, path: &[&str], value: Value| Want {
        id: id.to_owned(),
        file: file.to_owned(),
        kind: Kind::Member,
        path: path.iter().map(|s| (*s).to_owned()).collect(),
        value,
    };
    let element = |path: &[&str], value: Value| Want {
        kind: Kind::Element,
        ..member(&paths.settings, path, value)
    };
    Some(match id {
        "mcp-server" => member(
            &paths.config,
            &["mcpServers", SERVER],
            serde_json::json!({ "type": "stdio", "command": sp.binary, "args": sp.server_args() }),
        ),
        "hook-working" => element(
            &["hooks", "UserPromptSubmit"],
            hook_value(sp.command("hook working")),
        ),
        "hook-idle" => element(&["hooks", "Stop"], hook_value(sp.command("hook idle"))),
        "status-line" => member(
            &paths.settings,
            &["statusLine"],
            serde_json::json!({ "type": "command", "command": sp.command("status-line") }),
        ),
        _ => {
            let tool = id.strip_prefix("allow:")?;
            TOOLS.contains(&tool).then_some(())?;
            element(
                &["permissions", "allow"],
                Value::String(format!("mcp__{SERVER}__{tool}")),
            )
        }
    })
}

/// What install wants: what the flags ask for, and everything an earlier
/// install added (refreshed with today's binary path). Install only adds;
/// `uninstall` takes out.
fn wants(a: &InstallArgs, m: &Manifest, paths: &ClaudePaths, sp: &Spelling) -> Vec<Want> {
    let mut ids: Vec<String> = vec!["mcp-server".into()];
    if !a.no_hooks {
        ids.extend(["hook-working".into(), "hook-idle".into()]);
    }
    if a.status_line {
        ids.push("status-line".into());
    }
    if a.allow_tools {
        ids.extend(TOOLS.iter().map(|t| format!("allow:{t}")));
    }
    for f in &m.files {
        for e in &f.entries {
            if !ids.contains(&e.id) {
                ids.push(e.id.clone());
            }
        }
    }
    ids.iter()
        .filter_map(|id| want_for(id, paths, sp))
        .collect()
}

// ---------------------------------------------------------------------------
// JSON documents

/// A JSON file as read.
#[derive(Debug, Clone)]
struct Doc {
    /// The file written (a symlink's target).
    real: PathBuf,
    /// Its bytes; `None` when it does not exist.
    bytes: Option<Vec<u8>>,
    /// Its permissions, to keep.
    perms: Option<fs::Permissions>,
    /// The parsed object (`{}` when missing or blank).
    value: Map<String, Value>,
}

/// Why a file cannot be used.
fn unusable(path: &Path, what: String) -> Failure {
    Failure::new(exit::IO, format!("{}: {what}", path.display())).hint(format!(
        "fix {} (or move it away); nothing was changed",
        path.display()
    ))
}

fn read_doc(path: &Path) -> Result<Doc, Failure> {
    let real = real_path(path)?;
    let (bytes, perms) = match fs::read(&real) {
        Ok(b) => {
            let perms = fs::metadata(&real)
                .map_err(|e| io_failure("read", &real, &e))?
                .permissions();
            (Some(b), Some(perms))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => return Err(io_failure("read", &real, &e)),
    };
    let value = match &bytes {
        None => Map::new(),
        Some(b) => parse_object(b, path)?,
    };
    Ok(Doc {
        real,
        bytes,
        perms,
        value,
    })
}

/// Parses a JSON object, naming the line and column of a syntax error.
fn parse_object(bytes: &[u8], shown: &Path) -> Result<Map<String, Value>, Failure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(unusable(
            shown,
            format!("the top level is {}, not a JSON object", type_name(&other)),
        )),
        Err(e) => {
            let text = e.to_string();
            let message = text
                .find(" at line ")
                .map_or(text.as_str(), |at| &text[..at]);
            Err(unusable(
                shown,
                format!(
                    "line {} column {}: not valid JSON ({message})",
                    e.line(),
                    e.column()
                ),
            ))
        }
    }
}

/// A symlink's target (a dotfile manager's link stays a link), else the path.
fn real_path(path: &Path) -> Result<PathBuf, Failure> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| io_failure("follow the link", path, &e))
        }
        _ => Ok(path.to_owned()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `hooks.Stop`, and `hooks.Stop[]` for an element of it.
fn dotted(path: &[String], kind: Kind) -> String {
    let mut s = path.join(".");
    if kind == Kind::Element {
        s.push_str("[]");
    }
    s
}

/// The value at `path`, if every step is there.
fn get<'a>(root: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut obj = root;
    for key in parents {
        obj = obj.get(key)?.as_object()?;
    }
    obj.get(last)
}

/// The object at `path` (the root for an empty path), created with the
/// objects leading to it; each created one is added to `created`. An
/// existing step that is not an object is an error naming it.
fn object_at<'a>(
    root: &'a mut Map<String, Value>,
    path: &[String],
    created: &mut Vec<Vec<String>>,
) -> Result<&'a mut Map<String, Value>, String> {
    let mut obj = root;
    for (i, key) in path.iter().enumerate() {
        if !obj.contains_key(key) {
            created.push(path[..=i].to_vec());
        }
        obj = match obj
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            Value::Object(o) => o,
            other => {
                return Err(format!(
                    "{} is {}, where claudemesh expects an object",
                    path[..=i].join("."),
                    type_name(other)
                ));
            }
        };
    }
    Ok(obj)
}

/// The array at `path`, created (with the objects leading to it) if
/// missing.
fn array_at<'a>(
    root: &'a mut Map<String, Value>,
    path: &[String],
    created: &mut Vec<Vec<String>>,
) -> Result<&'a mut Vec<Value>, String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("an empty path".into());
    };
    let obj = object_at(root, parents, created)?;
    if !obj.contains_key(last) {
        created.push(path.to_vec());
    }
    match obj
        .entry(last.clone())
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(a) => Ok(a),
        other => Err(format!(
            "{} is {}, where claudemesh expects an array",
            path.join("."),
            type_name(other)
        )),
    }
}

/// Checks, without changing anything, that `path` can hold what install
/// puts there (its existing steps are objects, and for an element the
/// array is an array).
fn check_shape(root: &Map<String, Value>, path: &[String], kind: Kind) -> Result<(), String> {
    let mut obj = root;
    let n = path.len();
    for (i, key) in path.iter().enumerate() {
        let Some(v) = obj.get(key) else {
            return Ok(());
        };
        let last = i + 1 == n;
        if last {
            return match (kind, v) {
                (Kind::Element, Value::Array(_)) | (Kind::Member, _) => Ok(()),
                (Kind::Element, other) => Err(format!(
                    "{} is {}, where claudemesh expects an array",
                    path.join("."),
                    type_name(other)
                )),
            };
        }
        obj = match v {
            Value::Object(o) => o,
            other => {
                return Err(format!(
                    "{} is {}, where claudemesh expects an object",
                    path[..=i].join("."),
                    type_name(other)
                ));
            }
        };
    }
    Ok(())
}

/// Removes the member at `path`, keeping the order of the others.
fn remove_member(root: &mut Map<String, Value>, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut obj = root;
    for key in parents {
        obj = obj.get_mut(key)?.as_object_mut()?;
    }
    obj.shift_remove(last)
}

fn set_member(root: &mut Map<String, Value>, path: &[String], value: Value) -> Option<()> {
    let (last, parents) = path.split_last()?;
    let mut obj = root;
    for key in parents {
        obj = obj.get_mut(key)?.as_object_mut()?;
    }
    obj.insert(last.clone(), value);
    Some(())
}

fn array_mut<'a>(root: &'a mut Map<String, Value>, path: &[String]) -> Option<&'a mut Vec<Value>> {
    let (last, parents) = path.split_last()?;
    let mut obj = root;
    for key in parents {
        obj = obj.get_mut(key)?.as_object_mut()?;
    }
    obj.get_mut(last)?.as_array_mut()
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// The file's bytes for `value`, indented like `like` (the file as it
/// was: its first indented line gives the unit, two spaces otherwise) and
/// ending in a newline if it did (or is new).
fn render(value: &Map<String, Value>, like: Option<&[u8]>) -> Result<Vec<u8>, Failure> {
    let indent = like
        .and_then(detect_indent)
        .unwrap_or_else(|| b"  ".to_vec());
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(&indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut ser)
        .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot encode JSON: {e}")))?;
    if like.is_none_or(|b| b.ends_with(b"\n")) {
        out.push(b'\n');
    }
    Ok(out)
}

fn detect_indent(bytes: &[u8]) -> Option<Vec<u8>> {
    bytes.split(|b| *b == b'\n').skip(1).find_map(|line| {
        let n = line
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let rest = &line[n..];
        (n > 0 && !rest.is_empty() && !rest.iter().all(u8::is_ascii_whitespace))
            .then(|| line[..n].to_vec())
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------
// Files on disk

/// Permissions of a file install writes for the first time.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// 0600: Claude Code's JSON files and the manifest.
    Private,
    /// 0644: the skill file.
    Public,
}

#[derive(Debug)]
enum WriteError {
    Io(&'static str, PathBuf, std::io::Error),
    /// The file is no longer the bytes the change was planned against.
    Changed,
}

impl WriteError {
    fn failure(self, shown: &Path) -> Failure {
        match self {
            WriteError::Io(what, path, e) => io_failure(what, &path, &e),
            WriteError::Changed => Failure::new(
                exit::IO,
                format!(
                    "{} kept changing while claudemesh edited it (is Claude Code writing it?)",
                    shown.display()
                ),
            )
            .hint("run it again, or quit Claude Code first"),
        }
    }
}

fn io_failure(what: &str, path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(exit::IO, format!("cannot {what} {}: {e}", path.display()))
        .hint("check the file's permissions; nothing more was changed")
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, std::io::Error> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same
/// directory, synced, then renamed over it. `perms` are kept (else
/// `mode`). With `expect`, the file must still hold exactly those bytes
/// (`Some(None)`: must still be missing) right before the rename.
fn replace_file(
    path: &Path,
    bytes: &[u8],
    mode: Mode,
    expect: Option<(Option<&[u8]>, Option<&fs::Permissions>)>,
) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |what, e| WriteError::Io(what, path.to_owned(), e);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.claudemesh-"))
        .tempfile_in(dir)
        .map_err(|e| io("write a file in", e))?;
    tmp.write_all(bytes).map_err(|e| io("write", e))?;
    let perms = match expect {
        Some((_, Some(p))) => Some(p.clone()),
        _ => None,
    };
    set_perms(tmp.as_file(), perms, mode).map_err(|e| io("set the permissions of", e))?;
    tmp.as_file().sync_all().map_err(|e| io("write", e))?;
    if let Some((before, _)) = expect {
        let now = read_opt(path).map_err(|e| io("read", e))?;
        if now.as_deref() != before {
            return Err(WriteError::Changed);
        }
    }
    tmp.persist(path).map_err(|e| io("replace", e.error))?;
    sync_dir(dir);
    Ok(())
}

fn set_perms(f: &fs::File, perms: Option<fs::Permissions>, mode: Mode) -> std::io::Result<()> {
    match perms {
        Some(p) => f.set_permissions(p),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let m = match mode {
                    Mode::Private => 0o600,
                    Mode::Public => 0o644,
                };
                f.set_permissions(fs::Permissions::from_mode(m))
            }
            #[cfg(not(unix))]
            {
                let _ = mode;
                Ok(())
            }
        }
    }
}

/// Makes a rename durable (best effort; not every platform can).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// `20261125T100003Z` (UTC).
fn stamp() -> String {
    let s = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    match (d.get(..8), d.get(8..14)) {
        (Some(day), Some(time)) => format!("{day}T{time}Z"),
        _ => d,
    }
}

/// Writes `bytes` to a new `<file>.claudemesh-backup-<stamp>` beside
/// `file` (`-2`, `-3` … if taken), with `perms`; returns its path.
fn write_backup(
    file: &Path,
    bytes: &[u8],
    perms: Option<&fs::Permissions>,
    stamp: &str,
) -> Result<PathBuf, Failure> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 1..100 {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = file.with_file_name(format!("{name}.claudemesh-backup-{stamp}{suffix}"));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = match opts.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_failure("write the backup", &path, &e)),
        };
        f.write_all(bytes)
            .and_then(|()| set_perms(&f, perms.cloned(), Mode::Private))
            .and_then(|()| f.sync_all())
            .map_err(|e| io_failure("write the backup", &path, &e))?;
        return Ok(path);
    }
    Err(Failure::new(
        exit::IO,
        format!("too many backups of {} this second", file.display()),
    ))
}

/// Creates `dir` and its missing parents, adding each it created to
/// `created` (outermost first).
fn make_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_owned());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.iter().rev() {
        match fs::create_dir(m) {
            Ok(()) => created.push(m.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_failure("create", m, &e)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reports

/// What happened (or would) to one file.
#[derive(Debug, Clone, Serialize)]
struct FileReport {
    path: String,
    /// `created`, `modified`, `unchanged`, `restored` (the original bytes
    /// written back), `deleted`.
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<String>,
    changes: Vec<Change>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

/// One change inside a file.
#[derive(Debug, Clone, Serialize)]
struct Change {
    /// `add`, `replace`, `remove`, `restore`.
    op: &'static str,
    /// The JSON path (`hooks.Stop[]`); empty (left out) for a whole file.
    #[serde(skip_serializing_if = "String::is_empty")]
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
}

impl FileReport {
    fn new(path: &Path, action: &'static str) -> FileReport {
        FileReport {
            path: path.display().to_string(),
            action,
            backup: None,
            changes: Vec::new(),
            notes: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    dry_run: bool,
    changed: bool,
    files: Vec<FileReport>,
    manifest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'static str>,
}

fn print_files(files: &[FileReport], dry: bool) {
    for f in files {
        if f.action == "unchanged" {
            continue;
        }
        let action = match (dry, f.action) {
            (false, a) => a.to_owned(),
            (true, "created") => "would be created".to_owned(),
            (true, "deleted") => "would be deleted".to_owned(),
            (true, "restored") => "would get its original bytes back".to_owned(),
            (true, _) => "would be modified".to_owned(),
        };
        let mut line = format!("  {}  ({action}", f.path);
        if let Some(b) = &f.backup {
            let verb = if dry { "backup first to" } else { "backup:" };
            line.push_str(&format!("; {verb} {b}"));
        }
        line.push(')');
        println!("{line}");
        for c in &f.changes {
            let sign = match c.op {
                "add" => "+",
                "remove" => "-",
                _ => "~",
            };
            match &c.value {
                Some(v) if !c.path.is_empty() => println!("    {sign} {}  {v}", c.path),
                _ if !c.path.is_empty() => println!("    {sign} {}", c.path),
                _ => {}
            }
        }
        for n in &f.notes {
            println!("    ({n})");
        }
    }
}

// ---------------------------------------------------------------------------
// install

/// A planned change to one JSON file.
#[derive(Debug)]
struct FilePlan {
    doc: Doc,
    /// The record after the change.
    record: FileRecord,
    new_value: Map<String, Value>,
    report: FileReport,
}

impl FilePlan {
    fn changed(&self) -> bool {
        !self.report.changes.is_empty()
    }
}

/// Plans install's wants for one file. Members that are not ours and
/// differ from what install wants are conflicts (replaced with `force`).
fn plan_file(
    path: &Path,
    wants: &[&Want],
    old: Option<&FileRecord>,
    force: bool,
    conflicts: &mut Vec<Failure>,
) -> Result<Option<FilePlan>, Failure> {
    let doc = read_doc(path)?;
    let mut record = old.cloned().unwrap_or_else(|| FileRecord::new(path));
    let mut value = doc.value.clone();
    let mut report = FileReport::new(path, "modified");
    for w in wants {
        check_shape(&value, &w.path, w.kind).map_err(|e| unusable(path, e))?;
        let mine = record.entries.iter().position(|e| e.id == w.id);
        match w.kind {
            Kind::Member => {
                let current = get(&value, &w.path).cloned();
                let recorded = mine.map(|i| record.entries[i].clone());
                match current {
                    Some(c) if c == w.value => {
                        if recorded.is_none() {
                            report.notes.push(format!(
                                "{} is already there as claudemesh would write it; left as it is",
                                dotted(&w.path, w.kind)
                            ));
                        }
                    }
                    Some(c) => {
                        let ours = recorded.as_ref().is_some_and(|r| r.value == c);
                        if !ours && !force {
                            conflicts.push(member_conflict(path, w, &c));
                            continue;
                        }
                        let previous = match &recorded {
                            Some(r) => r.previous.clone(),
                            None => Some(c.clone()),
                        };
                        set_member(&mut value, &w.path, w.value.clone());
                        upsert(&mut record, mine, w, previous);
                        report.changes.push(Change {
                            op: "replace",
                            path: dotted(&w.path, w.kind),
                            value: Some(w.value.clone()),
                        });
                    }
                    None => {
                        let (last, parents) = match w.path.split_last() {
                            Some(x) => x,
                            None => continue,
                        };
                        let obj = object_at(&mut value, parents, &mut record.containers)
                            .map_err(|e| unusable(path, e))?;
                        obj.insert(last.clone(), w.value.clone());
                        let previous = recorded.and_then(|r| r.previous);
                        upsert(&mut record, mine, w, previous);
                        report.changes.push(Change {
                            op: "add",
                            path: dotted(&w.path, w.kind),
                            value: Some(w.value.clone()),
                        });
                    }
                }
            }
            Kind::Element => {
                let recorded = mine.map(|i| record.entries[i].value.clone());
                let arr = array_at(&mut value, &w.path, &mut record.containers)
                    .map_err(|e| unusable(path, e))?;
                let has_new = arr.contains(&w.value);
                let old_at = recorded
                    .as_ref()
                    .and_then(|r| arr.iter().rposition(|v| v == r));
                match (&recorded, has_new, old_at) {
                    // Ours, and as install would write it today.
                    (Some(r), true, _) if *r == w.value => {}
                    // An earlier install's, spelled differently (the
                    // binary moved): replaced where it is.
                    (Some(_), false, Some(i)) => {
                        arr[i] = w.value.clone();
                        upsert(&mut record, mine, w, None);
                        report.changes.push(Change {
                            op: "replace",
                            path: dotted(&w.path, w.kind),
                            value: Some(w.value.clone()),
                        });
                    }
                    // Someone else's identical entry: not ours to add or
                    // remove.
                    (None, true, _) => {
                        report.notes.push(format!(
                            "{} already holds {}; not added again",
                            dotted(&w.path, Kind::Member),
                            w.value
                        ));
                    }
                    // Ours but it is there twice now, or the user took it
                    // out (added back), or new.
                    _ => {
                        if !has_new {
                            arr.push(w.value.clone());
                            report.changes.push(Change {
                                op: "add",
                                path: dotted(&w.path, w.kind),
                                value: Some(w.value.clone()),
                            });
                        }
                        upsert(&mut record, mine, w, None);
                    }
                }
            }
        }
    }
    // Each container once; one the user took out is no longer ours.
    let mut seen = Vec::new();
    record.containers.retain(|c| {
        get(&value, c).is_some() && !seen.contains(c) && {
            seen.push(c.clone());
            true
        }
    });
    if report.changes.is_empty() {
        if doc.bytes.is_none() {
            // Nothing to add to a file that does not exist.
            return Ok(None);
        }
        report.action = "unchanged";
    } else if doc.bytes.is_none() {
        report.action = "created";
    }
    Ok(Some(FilePlan {
        doc,
        record,
        new_value: value,
        report,
    }))
}

fn upsert(record: &mut FileRecord, at: Option<usize>, w: &Want, previous: Option<Value>) {
    let e = Entry {
        id: w.id.clone(),
        kind: w.kind,
        path: w.path.clone(),
        value: w.value.clone(),
        previous,
    };
    match at {
        Some(i) => record.entries[i] = e,
        None => record.entries.push(e),
    }
}

fn member_conflict(path: &Path, w: &Want, current: &Value) -> Failure {
    let what = dotted(&w.path, w.kind);
    let mut shown = current.to_string();
    if shown.chars().count() > 120 {
        shown = shown.chars().take(117).collect::<String>() + "...";
    }
    Failure::new(
        exit::EXISTS,
        format!(
            "{} already has {what} = {shown}, which claudemesh did not write: nothing was changed",
            path.display()
        ),
    )
    .hint(format!(
        "pass --force to replace it (`claudemesh uninstall` puts it back){}",
        if w.id == "status-line" {
            ", or install without --status-line"
        } else {
            ""
        }
    ))
}

/// What install does with the skill file.
#[derive(Debug)]
enum SkillPlan {
    Keep,
    Write {
        /// The file there now, replaced (`--force`), to keep.
        replaced: Option<Vec<u8>>,
    },
}

fn plan_skill(
    path: &Path,
    old: Option<&SkillRecord>,
    force: bool,
    report: &mut FileReport,
) -> Result<Result<SkillPlan, Failure>, Failure> {
    let current = read_opt(path).map_err(|e| io_failure("read", path, &e))?;
    let ours = SKILL.as_bytes();
    Ok(Ok(match current {
        None => {
            report.action = "created";
            report.changes.push(Change {
                op: "add",
                path: String::new(),
                value: None,
            });
            SkillPlan::Write { replaced: None }
        }
        Some(b) if b == ours => {
            report.action = "unchanged";
            if old.is_none() {
                report
                    .notes
                    .push("the same skill file is already there; left as it is".into());
            }
            SkillPlan::Keep
        }
        Some(b) if old.is_some_and(|r| r.sha256 == sha256_hex(&b)) => {
            report.action = "modified";
            report.changes.push(Change {
                op: "replace",
                path: String::new(),
                value: None,
            });
            SkillPlan::Write { replaced: None }
        }
        Some(b) if force => {
            report.action = "modified";
            report.changes.push(Change {
                op: "replace",
                path: String::new(),
                value: None,
            });
            SkillPlan::Write { replaced: Some(b) }
        }
        Some(_) => {
            let edited = old.is_some();
            return Ok(Err(Failure::new(
                exit::EXISTS,
                format!(
                    "{} {}: nothing was changed",
                    path.display(),
                    if edited {
                        "was edited since claudemesh wrote it"
                    } else {
                        "exists and claudemesh did not write it"
                    }
                ),
            )
            .hint(
                "pass --force to replace it (it is kept beside it and `claudemesh uninstall` puts it back), or --no-skill",
            )));
        }
    }))
}

/// `claudemesh install`.
pub fn install(g: &Global, a: &InstallArgs) -> Outcome {
    let paths = ClaudePaths::find()?;
    let home = absolute(&resolve_home(g.home.as_deref())?)?;
    let spelling = Spelling::new(g)?;
    let mut manifest = load_manifest(&home)?.unwrap_or(Manifest {
        version: MANIFEST_VERSION,
        ..Manifest::default()
    });
    manifest.version = MANIFEST_VERSION;
    let wants = wants(a, &manifest, &paths, &spelling);

    let mut attempt = 0;
    let (reports, changed) = loop {
        attempt += 1;
        match install_once(a, &paths, &home, &wants, &mut manifest) {
            Err(Retry::Changed(f)) if attempt < ATTEMPTS => {
                tracing::info!(file = %f.display(), "the file changed while it was edited; again");
            }
            Err(Retry::Changed(f)) => return Err(WriteError::Changed.failure(&f)),
            Err(Retry::Fail(f)) => return Err(f),
            Ok(r) => break r,
        }
    };

    let manifest_shown = manifest_path(&home).display().to_string();
    if g.json {
        output::json(&Report {
            command: "install",
            dry_run: a.dry_run,
            changed,
            files: reports,
            manifest: manifest_shown,
            warnings: Vec::new(),
            next: Some(NEXT),
        });
        return Ok(());
    }
    // Notes on files that are not listed below.
    for f in reports
        .iter()
        .filter(|f| f.action == "unchanged" || g.quiet)
    {
        for n in &f.notes {
            eprintln!("note: {}: {n}", f.path);
        }
    }
    if g.quiet {
        return Ok(());
    }
    if !changed {
        println!("claudemesh is already installed for Claude Code: nothing changed.");
        if !a.dry_run {
            println!("Next: {NEXT}.");
        }
        return Ok(());
    }
    if a.dry_run {
        println!("Would install claudemesh for Claude Code (dry run: nothing was changed):");
        print_files(&reports, true);
        println!("Run it without --dry-run to make these changes.");
    } else {
        println!("Installed claudemesh for Claude Code:");
        print_files(&reports, false);
        println!("Recorded in {manifest_shown}: `claudemesh uninstall` takes out exactly these.");
        println!("Next: {NEXT}.");
    }
    Ok(())
}

/// Why an attempt stopped.
#[derive(Debug)]
enum Retry {
    /// This file changed under us: plan again.
    Changed(PathBuf),
    Fail(Failure),
}

impl From<Failure> for Retry {
    fn from(f: Failure) -> Self {
        Retry::Fail(f)
    }
}

/// Plans everything (refusing before any change), then writes file by
/// file, saving the manifest before each write.
fn install_once(
    a: &InstallArgs,
    paths: &ClaudePaths,
    home: &Path,
    wants: &[Want],
    manifest: &mut Manifest,
) -> Result<(Vec<FileReport>, bool), Retry> {
    // Plan.
    let mut conflicts = Vec::new();
    let mut plans = Vec::new();
    let mut files: Vec<&Path> = Vec::new();
    for w in wants {
        if !files.contains(&w.file.as_path()) {
            files.push(&w.file);
        }
    }
    for file in &files {
        let mine: Vec<&Want> = wants.iter().filter(|w| w.file == *file).collect();
        let old = manifest.files.iter().find(|r| r.path == *file);
        if let Some(p) = plan_file(file, &mine, old, a.force, &mut conflicts)? {
            plans.push(p);
        }
    }
    let want_skill = !a.no_skill || manifest.skill.is_some();
    let mut skill_report = FileReport::new(&paths.skill, "unchanged");
    let skill_plan = if want_skill {
        match plan_skill(
            &paths.skill,
            manifest.skill.as_ref(),
            a.force,
            &mut skill_report,
        )? {
            Ok(p) => Some(p),
            Err(f) => {
                conflicts.push(f);
                None
            }
        }
    } else {
        None
    };
    if let Some(first) = conflicts.into_iter().next() {
        return Err(Retry::Fail(first));
    }
    let changed =
        plans.iter().any(FilePlan::changed) || matches!(skill_plan, Some(SkillPlan::Write { .. }));
    let mut reports: Vec<FileReport> = plans.iter().map(|p| p.report.clone()).collect();
    if want_skill {
        reports.push(skill_report.clone());
    }
    if a.dry_run {
        for (r, p) in reports.iter_mut().zip(&plans) {
            if p.changed() && p.doc.bytes.is_some() {
                r.backup = Some(format!(
                    "{}.claudemesh-backup-{}",
                    p.doc.real.display(),
                    stamp()
                ));
            }
        }
        return Ok((reports, changed));
    }

    // Write.
    let stamp = stamp();
    let mut out = Vec::new();
    for mut p in plans {
        let file = p.record.path.clone();
        if !p.changed() {
            // Nothing to write; the record may still gain entries found in
            // place (an earlier install's, now refreshed).
            store_record(manifest, p.record);
            out.push(p.report);
            continue;
        }
        if let Some(parent) = p.doc.real.parent() {
            make_dirs(parent, &mut manifest.dirs)?;
        }
        match &p.doc.bytes {
            Some(bytes) => {
                let backup = write_backup(&p.doc.real, bytes, p.doc.perms.as_ref(), &stamp)?;
                // The first change claudemesh makes: these are the
                // original bytes.
                if p.record.backups.is_empty() && !p.record.created {
                    p.record.original_sha256 = Some(sha256_hex(bytes));
                }
                p.record.backups.push(backup.clone());
                p.report.backup = Some(backup.display().to_string());
            }
            None => {
                // A file made now: nothing to restore but its absence.
                p.record.created = true;
                p.record.original_sha256 = None;
            }
        }
        store_record(manifest, p.record);
        save_manifest(home, manifest)?;
        let bytes = render(&p.new_value, p.doc.bytes.as_deref())?;
        let expect = (p.doc.bytes.as_deref(), p.doc.perms.as_ref());
        match replace_file(&p.doc.real, &bytes, Mode::Private, Some(expect)) {
            Ok(()) => {}
            Err(WriteError::Changed) => return Err(Retry::Changed(file)),
            Err(e) => return Err(Retry::Fail(e.failure(&file))),
        }
        out.push(p.report);
    }
    if let Some(plan) = skill_plan {
        if let SkillPlan::Write { replaced } = plan {
            let dir = paths.skill.parent().unwrap_or(&paths.dir);
            make_dirs(dir, &mut manifest.dirs)?;
            let mut record = SkillRecord {
                path: paths.skill.clone(),
                sha256: sha256_hex(SKILL.as_bytes()),
                replaced: manifest.skill.as_ref().and_then(|s| s.replaced.clone()),
            };
            if let Some(b) = replaced {
                let kept = write_backup(&paths.skill, &b, None, &stamp)?;
                skill_report.backup = Some(kept.display().to_string());
                record.replaced = Some(kept);
            }
            manifest.skill = Some(record);
            save_manifest(home, manifest)?;
            replace_file(&paths.skill, SKILL.as_bytes(), Mode::Public, None)
                .map_err(|e| e.failure(&paths.skill))?;
        }
        out.push(skill_report);
    }
    save_manifest(home, manifest)?;
    Ok((out, changed))
}

/// Keeps `r` in the manifest (a record of nothing is not kept).
fn store_record(m: &mut Manifest, r: FileRecord) {
    if r.entries.is_empty() && r.backups.is_empty() && !r.created {
        return;
    }
    match m.files.iter_mut().find(|f| f.path == r.path) {
        Some(f) => *f = r,
        None => m.files.push(r),
    }
}

// ---------------------------------------------------------------------------
// uninstall

/// A planned undo of one JSON file.
#[derive(Debug)]
struct UndoPlan {
    doc: Doc,
    record: FileRecord,
    /// The bytes to write; `None` to delete the file.
    bytes: Option<Vec<u8>>,
    /// The backups holding exactly those bytes (redundant afterwards).
    redundant: Vec<PathBuf>,
    report: FileReport,
}

fn plan_undo(record: &FileRecord, warnings: &mut Vec<String>) -> Result<Option<UndoPlan>, Failure> {
    let path = &record.path;
    let doc = read_doc(path)?;
    let Some(before) = doc.bytes.as_deref() else {
        return Ok(None);
    };
    let mut report = FileReport::new(path, "unchanged");
    let mut value = doc.value.clone();
    strip_ours(&mut value, record, Some((&mut report, warnings)));
    if value == doc.value {
        return Ok(Some(UndoPlan {
            doc,
            record: record.clone(),
            bytes: None,
            redundant: Vec::new(),
            report,
        }));
    }
    // What to write: nothing (a file install made, back to empty), the
    // original bytes (what is left is the original), or what is left.
    let original = original_bytes(record);
    let original_value = original.as_ref().and_then(|o| parse_object(o, path).ok());
    let (bytes, action) = if record.created && value.is_empty() {
        (None, "deleted")
    } else if let (Some(o), Some(v)) = (&original, &original_value)
        && *v == value
    {
        (Some(o.clone()), "restored")
    } else {
        (Some(render(&value, Some(before))?), "modified")
    };
    report.action = action;
    // Backups that hold nothing but the original (and claudemesh's
    // entries) are not needed once the original is back.
    let redundant = match &original_value {
        Some(orig) if action == "restored" => record
            .backups
            .iter()
            .filter(|p| {
                fs::read(p).ok().is_some_and(|b| {
                    parse_object(&b, p).is_ok_and(|mut v| {
                        strip_ours(&mut v, record, None);
                        v == *orig
                    })
                })
            })
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some(UndoPlan {
        doc,
        record: record.clone(),
        bytes,
        redundant,
        report,
    }))
}

/// Takes install's entries out of `value` (those still exactly as it
/// wrote them; a replaced member gets its previous value back), then the
/// containers it made that are empty again. With `log`, each change is
/// reported and each entry kept is a warning.
fn strip_ours(
    value: &mut Map<String, Value>,
    record: &FileRecord,
    mut log: Option<(&mut FileReport, &mut Vec<String>)>,
) {
    let mut changes = Vec::new();
    for e in record.entries.iter().rev() {
        let shown = dotted(&e.path, e.kind);
        let change = match e.kind {
            Kind::Member => match get(value, &e.path) {
                Some(c) if *c == e.value => match &e.previous {
                    Some(p) => {
                        set_member(value, &e.path, p.clone());
                        Some(("restore", p.clone()))
                    }
                    None => {
                        remove_member(value, &e.path);
                        Some(("remove", e.value.clone()))
                    }
                },
                Some(_) => {
                    if let Some((_, warnings)) = log.as_mut() {
                        warnings.push(format!(
                            "{}: kept {shown}: it was changed since claudemesh wrote it",
                            record.path.display()
                        ));
                    }
                    None
                }
                None => None,
            },
            Kind::Element => match array_mut(value, &e.path) {
                Some(arr) => arr.iter().rposition(|v| *v == e.value).map(|i| {
                    arr.remove(i);
                    ("remove", e.value.clone())
                }),
                None => None,
            },
        };
        if let Some((op, v)) = change {
            changes.push(Change {
                op,
                path: shown,
                value: Some(v),
            });
        }
    }
    if let Some((report, _)) = log {
        // In the order install added them.
        report.changes.extend(changes.into_iter().rev());
    }
    let mut containers = record.containers.clone();
    containers.sort_by_key(|c| std::cmp::Reverse(c.len()));
    for c in &containers {
        if is_empty_container(get(value, c)) {
            remove_member(value, c);
        }
    }
}

/// The file's bytes before claudemesh changed it, if a backup holds them.
fn original_bytes(record: &FileRecord) -> Option<Vec<u8>> {
    let sha = record.original_sha256.as_ref()?;
    record
        .backups
        .iter()
        .filter_map(|p| fs::read(p).ok())
        .find(|b| sha256_hex(b) == *sha)
}

/// `claudemesh uninstall`.
pub fn uninstall(g: &Global, a: &UninstallArgs) -> Outcome {
    let home = absolute(&resolve_home(g.home.as_deref())?)?;
    let manifest_shown = manifest_path(&home).display().to_string();
    let Some(manifest) = load_manifest(&home)? else {
        if g.json {
            output::json(&Report {
                command: "uninstall",
                dry_run: a.dry_run,
                changed: false,
                files: Vec::new(),
                manifest: manifest_shown,
                warnings: Vec::new(),
                next: None,
            });
        } else if !g.quiet {
            println!(
                "claudemesh is not installed for Claude Code (there is no {manifest_shown}): nothing to do."
            );
        }
        return Ok(());
    };
    let mut attempt = 0;
    let (reports, warnings, changed) = loop {
        attempt += 1;
        match uninstall_once(a, &home, &manifest) {
            Err(Retry::Changed(f)) if attempt < ATTEMPTS => {
                tracing::info!(file = %f.display(), "the file changed while it was edited; again");
            }
            Err(Retry::Changed(f)) => return Err(WriteError::Changed.failure(&f)),
            Err(Retry::Fail(f)) => return Err(f),
            Ok(r) => break r,
        }
    };
    const NEXT_OUT: &str = "restart Claude Code (or its sessions) to drop the claudemesh server";
    if g.json {
        output::json(&Report {
            command: "uninstall",
            dry_run: a.dry_run,
            changed,
            files: reports,
            manifest: manifest_shown,
            warnings,
            next: Some(NEXT_OUT),
        });
        return Ok(());
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if g.quiet {
        return Ok(());
    }
    if a.dry_run {
        println!("Would uninstall claudemesh from Claude Code (dry run: nothing was changed):");
        print_files(&reports, true);
        println!("Run it without --dry-run to make these changes.");
    } else {
        if changed {
            println!("Uninstalled claudemesh from Claude Code:");
            print_files(&reports, false);
        } else {
            println!("Nothing of claudemesh was left in Claude Code's files.");
        }
        println!("Removed the record {manifest_shown}.");
        println!("Next: {NEXT_OUT}.");
    }
    Ok(())
}

fn uninstall_once(
    a: &UninstallArgs,
    home: &Path,
    manifest: &Manifest,
) -> Result<(Vec<FileReport>, Vec<String>, bool), Retry> {
    let mut warnings = Vec::new();
    let mut plans = Vec::new();
    for r in &manifest.files {
        if let Some(p) = plan_undo(r, &mut warnings)? {
            plans.push(p);
        }
    }
    // The skill file.
    let mut skill = None;
    if let Some(s) = &manifest.skill {
        let mut report = FileReport::new(&s.path, "unchanged");
        match read_opt(&s.path).map_err(|e| io_failure("read", &s.path, &e))? {
            Some(b) if sha256_hex(&b) == s.sha256 => {
                let back = match &s.replaced {
                    Some(kept) => Some(fs::read(kept).map_err(|e| io_failure("read", kept, &e))?),
                    None => None,
                };
                report.action = if back.is_some() {
                    "restored"
                } else {
                    "deleted"
                };
                report.changes.push(Change {
                    op: if back.is_some() { "restore" } else { "remove" },
                    path: String::new(),
                    value: None,
                });
                skill = Some((s.clone(), back, report));
            }
            Some(_) => warnings.push(format!(
                "kept {}: it was changed since claudemesh wrote it",
                s.path.display()
            )),
            None => {}
        }
    }
    let mut reports: Vec<FileReport> = plans.iter().map(|p| p.report.clone()).collect();
    if let Some((_, _, r)) = &skill {
        reports.push(r.clone());
    }
    let changed = reports.iter().any(|r| r.action != "unchanged");
    if a.dry_run {
        return Ok((reports, warnings, changed));
    }

    let stamp = stamp();
    let mut out = Vec::new();
    for mut p in plans {
        let file = p.record.path.clone();
        if p.report.action == "unchanged" {
            out.push(p.report);
            continue;
        }
        let before = p.doc.bytes.as_deref();
        // The state being undone is kept, unless the original comes back.
        if p.report.action == "modified"
            && let Some(b) = before
        {
            let kept = write_backup(&p.doc.real, b, p.doc.perms.as_ref(), &stamp)?;
            p.report.backup = Some(kept.display().to_string());
        }
        match &p.bytes {
            Some(bytes) => {
                let expect = (before, p.doc.perms.as_ref());
                match replace_file(&p.doc.real, bytes, Mode::Private, Some(expect)) {
                    Ok(()) => {}
                    Err(WriteError::Changed) => return Err(Retry::Changed(file)),
                    Err(e) => return Err(Retry::Fail(e.failure(&file))),
                }
            }
            None => {
                if read_opt(&p.doc.real)
                    .map_err(|e| io_failure("read", &p.doc.real, &e))?
                    .as_deref()
                    != before
                {
                    return Err(Retry::Changed(file));
                }
                fs::remove_file(&p.doc.real).map_err(|e| io_failure("remove", &p.doc.real, &e))?;
            }
        }
        for r in &p.redundant {
            let _ = fs::remove_file(r);
        }
        let kept: Vec<String> = p
            .record
            .backups
            .iter()
            .filter(|b| !p.redundant.contains(b) && b.exists())
            .map(|b| b.display().to_string())
            .collect();
        if !kept.is_empty() {
            p.report
                .notes
                .push(format!("its backups are kept: {}", kept.join(", ")));
        }
        out.push(p.report);
    }
    if let Some((s, back, report)) = skill {
        match back {
            Some(bytes) => {
                replace_file(&s.path, &bytes, Mode::Public, None)
                    .map_err(|e| e.failure(&s.path))?;
                if let Some(kept) = &s.replaced {
                    let _ = fs::remove_file(kept);
                }
            }
            None => fs::remove_file(&s.path).map_err(|e| io_failure("remove", &s.path, &e))?,
        }
        out.push(report);
    }
    for d in manifest.dirs.iter().rev() {
        // Only if empty: anything else in it is someone else's.
        let _ = fs::remove_dir(d);
    }
    delete_manifest(home)?;
    Ok((out, warnings, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_leaves_plain_paths_and_quotes_the_rest() {
        assert_eq!(sh_quote("/usr/bin/claudemesh"), "/usr/bin/claudemesh");
        assert_eq!(sh_quote("/a b/claudemesh"), "'/a b/claudemesh'");
        assert_eq!(sh_quote("/it's/x"), r"'/it'\''s/x'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("/x/$HOME"), "'/x/$HOME'");
    }

    #[test]
    fn indentation_is_detected() {
        assert_eq!(detect_indent(b"{\n    \"a\": 1\n}"), Some(b"    ".to_vec()));
        assert_eq!(detect_indent(b"{\n\t\"a\": 1\n}"), Some(b"\t".to_vec()));
        assert_eq!(detect_indent(b"{\"a\": 1}"), None);
    }

    #[test]
    fn the_skill_has_front_matter_claude_code_reads() {
        let mut lines = SKILL.lines();
        assert_eq!(lines.next(), Some("---"));
        let front: Vec<&str> = lines.by_ref().take_while(|l| *l != "---").collect();
        let yaml: std::collections::BTreeMap<String, String> =
            serde_yaml::from_str(&front.join("\n")).unwrap();
        assert_eq!(yaml["name"], "claudemesh");
        let desc = &yaml["description"];
        assert!(!desc.is_empty() && desc.len() <= 1024, "{desc}");
        assert!(!desc.contains('<') && !desc.contains('>'), "{desc}");
        // Every tool the server has is taught.
        for t in TOOLS {
            assert!(SKILL.contains(&format!("`{t}`")), "{t}");
        }
    }

    #[test]
    fn paths_in_objects_are_made_and_found() {
        let mut root = Map::new();
        let mut created = Vec::new();
        let path: Vec<String> = vec!["hooks".into(), "Stop".into()];
        array_at(&mut root, &path, &mut created)
            .unwrap()
            .push(Value::Bool(true));
        assert_eq!(created, vec![vec!["hooks".to_owned()], path.clone()]);
        assert_eq!(get(&root, &path), Some(&serde_json::json!([true])));
        root.insert("x".into(), Value::from(1));
        assert!(check_shape(&root, &["x".into(), "y".into()], Kind::Member).is_err());
        assert!(check_shape(&root, &["x".into()], Kind::Element).is_err());
        assert!(check_shape(&root, &path, Kind::Element).is_ok());
    }
}
