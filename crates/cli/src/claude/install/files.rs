//! Claude Code's files on disk as install writes them: replaced
//! atomically with their permissions kept (and only if nobody changed them
//! since they were read), dated backups beside them, the directories
//! install made, and the retry when Claude Code writes a file under us.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use claudemesh_client::home::write_atomic;
use sha2::{Digest as _, Sha256};

use crate::exit::{self, Failure};

/// Attempts at a file that changes under us (Claude Code rewrites
/// `.claude.json` while it runs).
pub const ATTEMPTS: usize = 3;

/// Why an attempt at install or uninstall stopped.
#[derive(Debug)]
pub enum Retry {
    /// This file changed under us: plan again.
    Changed(PathBuf),
    Fail(Failure),
}

impl From<Failure> for Retry {
    fn from(f: Failure) -> Self {
        Retry::Fail(f)
    }
}

/// `p` made absolute (Claude Code runs our commands from any directory).
pub fn absolute(p: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(p).map_err(|e| {
        Failure::new(
            exit::IO,
            format!("cannot make {} absolute: {e}", p.display()),
        )
    })
}

/// SHA-256 of `bytes`, in hex (how the manifest recognises a file).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Permissions of a file install writes for the first time.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// 0600: Claude Code's JSON files and the manifest.
    Private,
    /// 0644: the skill file.
    Public,
}

#[derive(Debug)]
pub enum WriteError {
    Io(&'static str, PathBuf, std::io::Error),
    /// The file is no longer the bytes the change was planned against.
    Changed,
}

impl WriteError {
    pub fn failure(self, shown: &Path) -> Failure {
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

pub fn io_failure(what: &str, path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(exit::IO, format!("cannot {what} {}: {e}", path.display()))
        .hint("check the file's permissions; nothing more was changed")
}

pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, std::io::Error> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `bytes` atomically (`write_atomic`: a temporary
/// file in the same directory, synced, renamed over it, the directory
/// synced). `perms` are kept (else `mode`). With `expect`, the file must
/// still hold exactly those bytes (`Some(None)`: must still be missing)
/// when the write starts.
pub fn replace_file(
    path: &Path,
    bytes: &[u8],
    mode: Mode,
    expect: Option<(Option<&[u8]>, Option<&fs::Permissions>)>,
) -> Result<(), WriteError> {
    let io = |what, e| WriteError::Io(what, path.to_owned(), e);
    let bits = match expect {
        Some((_, Some(p))) => permission_bits(p, mode),
        _ => mode.bits(),
    };
    if let Some((before, _)) = expect {
        let now = read_opt(path).map_err(|e| io("read", e))?;
        if now.as_deref() != before {
            return Err(WriteError::Changed);
        }
    }
    write_atomic(path, bytes, bits).map_err(|e| io("replace", e))
}

impl Mode {
    /// The unix mode bits.
    fn bits(self) -> u32 {
        match self {
            Mode::Private => 0o600,
            Mode::Public => 0o644,
        }
    }
}

/// The mode bits of permissions read from a file (`mode`'s where the
/// platform has none).
fn permission_bits(p: &fs::Permissions, mode: Mode) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = mode;
        p.mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        mode.bits()
    }
}

fn set_perms(f: &fs::File, perms: Option<fs::Permissions>, mode: Mode) -> std::io::Result<()> {
    match perms {
        Some(p) => f.set_permissions(p),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                f.set_permissions(fs::Permissions::from_mode(mode.bits()))
            }
            #[cfg(not(unix))]
            {
                let _ = mode;
                Ok(())
            }
        }
    }
}

/// `20261125T100003Z` (UTC).
pub fn stamp() -> String {
    let s = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    match (d.get(..8), d.get(8..14)) {
        (Some(day), Some(time)) => format!("{day}T{time}Z"),
        _ => d,
    }
}

/// Writes `bytes` to a new `<file>.claudemesh-backup-<stamp>` beside
/// `file` (`-2`, `-3` … if taken), with `perms`; returns its path.
pub fn write_backup(
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
pub fn make_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), Failure> {
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
