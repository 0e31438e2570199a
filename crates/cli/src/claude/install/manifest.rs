//! The record of what install added, `<claudemesh home>/claude-install.json`:
//! every entry it put in Claude Code's JSON files (exactly as written, and
//! what `--force` replaced), the containers and directories it made, the
//! backups it kept and the skill file. Uninstall takes out only what this
//! names.

use std::fs;
use std::path::{Path, PathBuf};

use claudemesh_client::home::ensure_private_dir;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::claude::install::files::{Mode, io_failure, replace_file};
use crate::exit::{self, Failure};

/// The record of what install added, in the claudemesh home.
pub const MANIFEST: &str = "claude-install.json";

/// The manifest format this claudemesh writes (and the newest it reads).
pub const MANIFEST_VERSION: u32 = 1;

/// `claude-install.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The JSON files install changed.
    #[serde(default)]
    pub files: Vec<FileRecord>,
    /// The skill file, if install wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<SkillRecord>,
    /// Directories install created, in the order it created them.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
}

/// What install did to one JSON file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: PathBuf,
    /// The file did not exist before install.
    pub created: bool,
    /// SHA-256 (hex) of the file's bytes before claudemesh first changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_sha256: Option<String>,
    /// Copies written before each change, oldest (the original) first.
    #[serde(default)]
    pub backups: Vec<PathBuf>,
    /// Objects and arrays install created to hold its entries; uninstall
    /// removes each that is empty again.
    #[serde(default)]
    pub containers: Vec<Vec<String>>,
    /// The entries install put there.
    pub entries: Vec<Entry>,
}

impl FileRecord {
    pub fn new(path: &Path) -> FileRecord {
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
pub enum Kind {
    /// The value of an object member (`mcpServers.claudemesh`).
    Member,
    /// An element appended to an array (`hooks.Stop[]`).
    Element,
}

/// One thing install put in a JSON file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// What it is: `mcp-server`, `hook-working` (`hook prompt`),
    /// `hook-idle` (`hook stop`), `hook-session-start`, `status-line`,
    /// `allow:<tool>`.
    pub id: String,
    pub kind: Kind,
    /// The member's path, or the array's.
    pub path: Vec<String>,
    /// Exactly what install wrote.
    pub value: Value,
    /// The member's value before `--force` replaced it (put back by
    /// uninstall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Value>,
}

/// The skill file install wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkillRecord {
    pub path: PathBuf,
    /// SHA-256 (hex) of what install wrote.
    pub sha256: String,
    /// Where the file it replaced (`--force`) was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<PathBuf>,
}

pub fn manifest_path(home: &Path) -> PathBuf {
    home.join(MANIFEST)
}

pub fn load_manifest(home: &Path) -> Result<Option<Manifest>, Failure> {
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

pub fn save_manifest(home: &Path, m: &Manifest) -> Result<(), Failure> {
    ensure_private_dir(home)?;
    let path = manifest_path(home);
    let mut bytes = serde_json::to_vec_pretty(m)
        .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot encode the manifest: {e}")))?;
    bytes.push(b'\n');
    replace_file(&path, &bytes, Mode::Private, None).map_err(|e| e.failure(&path))
}

pub fn delete_manifest(home: &Path) -> Result<(), Failure> {
    let path = manifest_path(home);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_failure("remove", &path, &e)),
    }
}
