//! What a `.cmb` backup holds (TM9), and putting it back: the payload
//! (`"format": "claudemesh-backup/1"`, JSON) is every file of the home that
//! a device cannot get again from a broker — `config.json`, `policy.yaml`,
//! and every regular file in each mesh directory (`keys.json`, and pins or
//! grants files later versions keep there) by relative path, so new files
//! are carried without a format change. `state.db` is not in it: the
//! membership log is fetched and verified again from genesis on the next
//! connection (`MeshClient::connect`). The encryption is
//! `claudemesh_crypto::backup`; `docs/security.md` §11 gives both formats.
//!
//! Restoring writes the whole home into a fresh directory beside it,
//! checks that it opens (config and every key file), and only then moves
//! the current home aside (`<home>.before-restore-<stamp>`) and the new one
//! into place, so a bad backup never touches the home.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::home::{Home, ensure_private_dir, write_private_file};

/// The payload format this build writes and reads.
pub const PAYLOAD_FORMAT: &str = "claudemesh-backup/1";

/// Files at the top of the home that a backup carries (besides the mesh
/// directories).
pub const TOP_LEVEL_FILES: &[&str] = &["config.json", "policy.yaml"];

/// The decrypted contents of a backup.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupPayload {
    /// Always [`PAYLOAD_FORMAT`] for this version.
    pub format: String,
    /// When it was made, unix seconds.
    pub created_at: u64,
    /// The claudemesh version that made it.
    pub client_version: String,
    /// The files, sorted by path.
    pub files: Vec<BackupFile>,
}

/// One file of the home.
#[derive(Serialize, Deserialize)]
pub struct BackupFile {
    /// Relative to the home, `/`-separated.
    pub path: String,
    /// How `content` holds the bytes.
    pub encoding: FileEncoding,
    /// The bytes: the text itself (`utf8`) or lowercase hex (`hex`).
    pub content: Zeroizing<String>,
}

impl std::fmt::Debug for BackupFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupFile")
            .field("path", &self.path)
            .field("bytes", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// How a file's bytes are written in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    /// The file is UTF-8 text, stored as a JSON string.
    Utf8,
    /// Any other bytes, as lowercase hex.
    Hex,
}

/// Why a backup could not be made or put back.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// A file or directory of the home could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory could not be written or moved.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The home is not in a state worth saving (a damaged key file).
    #[error("{0}; nothing was written")]
    DamagedHome(String),
    /// The payload decrypted but is not a claudemesh home.
    #[error("the backup decrypted, but its contents are not valid: {0}")]
    Malformed(String),
    /// The home holds nothing to back up yet.
    #[error("this home belongs to no mesh yet (no config.json): nothing to back up")]
    NothingToBackUp,
    /// A payload format this build does not know.
    #[error("the backup's contents are in format {0:?}, which this claudemesh does not know")]
    UnknownFormat(String),
}

fn read_err(path: &Path, source: std::io::Error) -> PayloadError {
    PayloadError::Read {
        path: path.to_owned(),
        source,
    }
}

fn write_err(path: &Path, source: std::io::Error) -> PayloadError {
    PayloadError::Write {
        path: path.to_owned(),
        source,
    }
}

/// A mesh directory's name: the first 16 hex digits of the mesh id.
fn is_mesh_dir_name(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a file inside a mesh directory is state to carry: not a lock
/// file, not a temporary or hidden file.
fn carried_file_name(name: &str) -> bool {
    !name.starts_with('.') && !name.ends_with(".lock") && !name.ends_with(".tmp")
}

/// Whether `path` is one a backup may hold (checked before anything is
/// written on restore).
fn allowed_path(path: &str) -> bool {
    if TOP_LEVEL_FILES.contains(&path) {
        return true;
    }
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() >= 3
        && parts.len() <= 6
        && parts[0] == "meshes"
        && is_mesh_dir_name(parts[1])
        && parts[2..].iter().all(|p| {
            !p.is_empty()
                && carried_file_name(p)
                && p.len() <= 255
                && !p.contains(['\\', '\0'])
                && *p != ".."
        })
}

fn file_entry(rel: String, bytes: Zeroizing<Vec<u8>>) -> BackupFile {
    match std::str::from_utf8(&bytes) {
        Ok(text) => BackupFile {
            path: rel,
            encoding: FileEncoding::Utf8,
            content: Zeroizing::new(text.to_owned()),
        },
        Err(_) => BackupFile {
            path: rel,
            encoding: FileEncoding::Hex,
            content: Zeroizing::new(hex::encode(&*bytes)),
        },
    }
}

/// Every regular file under `dir` (recursively, symlinks not followed),
/// as `(relative path, absolute path)`.
fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), PayloadError> {
    for entry in fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
        let entry = entry.map_err(|e| read_err(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !carried_file_name(&name) {
            continue;
        }
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| read_err(&path, e))?;
        let child = format!("{rel}/{name}");
        if meta.is_file() {
            out.push((child, path));
        } else if meta.is_dir() && depth < 3 {
            walk(&path, &child, depth + 1, out)?;
        }
    }
    Ok(())
}

/// The payload for the home at `root`: `config.json`, `policy.yaml` if
/// present, and every regular file of every mesh directory. Fails when the
/// home would not restore (no readable `config.json`, a damaged key file).
pub fn collect(root: &Path, now_secs: u64) -> Result<BackupPayload, PayloadError> {
    check_home(root).map_err(PayloadError::DamagedHome)?;
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for name in TOP_LEVEL_FILES {
        let path = root.join(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => found.push(((*name).to_owned(), path)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(read_err(&path, e)),
        }
    }
    let meshes = root.join("meshes");
    match fs::read_dir(&meshes) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|e| read_err(&meshes, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).map_err(|e| read_err(&path, e))?;
                if meta.is_dir() && is_mesh_dir_name(&name) {
                    walk(&path, &format!("meshes/{name}"), 0, &mut found)?;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(read_err(&meshes, e)),
    }
    if !found.iter().any(|(rel, _)| rel == "config.json") {
        return Err(PayloadError::NothingToBackUp);
    }
    found.sort();
    let mut files = Vec::with_capacity(found.len());
    for (rel, path) in found {
        let bytes = Zeroizing::new(fs::read(&path).map_err(|e| read_err(&path, e))?);
        files.push(file_entry(rel, bytes));
    }
    Ok(BackupPayload {
        format: PAYLOAD_FORMAT.to_owned(),
        created_at: now_secs,
        client_version: env!("CARGO_PKG_VERSION").to_owned(),
        files,
    })
}

/// Opens the home at `root` the way every command does: its config and
/// every mesh's key file must load.
fn check_home(root: &Path) -> Result<(), String> {
    let home = Home::open(root).map_err(|e| e.to_string())?;
    for mesh in home.meshes() {
        home.load_keys(&mesh.id).map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl BackupPayload {
    /// The payload as JSON bytes (what is encrypted).
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, PayloadError> {
        serde_json::to_vec(self)
            .map(Zeroizing::new)
            .map_err(|e| PayloadError::Malformed(format!("cannot encode: {e}")))
    }

    /// Parses decrypted bytes and checks every path and encoding, before
    /// anything is written.
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
        }
        let head: Head = serde_json::from_slice(bytes)
            .map_err(|e| PayloadError::Malformed(format!("not JSON ({e})")))?;
        match head.format.as_deref() {
            Some(PAYLOAD_FORMAT) => {}
            Some(other) => return Err(PayloadError::UnknownFormat(other.to_owned())),
            None => return Err(PayloadError::Malformed("no \"format\"".into())),
        }
        let payload: BackupPayload =
            serde_json::from_slice(bytes).map_err(|e| PayloadError::Malformed(e.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        for f in &payload.files {
            if !allowed_path(&f.path) {
                return Err(PayloadError::Malformed(format!(
                    "a file at {:?}, which a claudemesh home does not have",
                    f.path
                )));
            }
            if !seen.insert(f.path.as_str()) {
                return Err(PayloadError::Malformed(format!("{:?} twice", f.path)));
            }
            f.bytes()?;
        }
        if !seen.contains("config.json") {
            return Err(PayloadError::Malformed("no config.json".into()));
        }
        Ok(payload)
    }

    /// The file at `path`, if the backup has it.
    pub fn file(&self, path: &str) -> Option<&BackupFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The meshes its `config.json` lists: `(id hex, name)`.
    pub fn meshes(&self) -> Vec<(String, String)> {
        let Some(Ok(bytes)) = self.file("config.json").map(BackupFile::bytes) else {
            return Vec::new();
        };
        serde_json::from_slice::<crate::home::HomeConfig>(&bytes)
            .map(|c| {
                c.meshes
                    .into_iter()
                    .map(|m| (m.id.to_hex(), m.name))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl BackupFile {
    /// The file's bytes.
    pub fn bytes(&self) -> Result<Zeroizing<Vec<u8>>, PayloadError> {
        match self.encoding {
            FileEncoding::Utf8 => Ok(Zeroizing::new(self.content.as_bytes().to_vec())),
            FileEncoding::Hex => hex::decode(self.content.as_bytes())
                .map(Zeroizing::new)
                .map_err(|e| PayloadError::Malformed(format!("{:?}: bad hex ({e})", self.path))),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The home, now holding the backup's files.
    pub home: PathBuf,
    /// Where the home that was there before now is (none if there was none).
    pub previous: Option<PathBuf>,
    /// How many files were written.
    pub files: usize,
}

/// Puts `payload` in place as the home at `root`.
///
/// The new home is written into a fresh directory beside `root` (files
/// 0600, directories 0700) and opened as a home (config and every key file
/// must load); `carry_over` names files of the current home that stay with
/// this device rather than with the backup (the audit log) and are copied
/// in. Then the current home is renamed to `<root>.before-restore-<stamp>`
/// (a suffix is added if that exists) and the new one renamed into place.
/// If any step before the first rename fails, the home is untouched and
/// the fresh directory is removed.
pub fn restore(
    root: &Path,
    payload: &BackupPayload,
    stamp: &str,
    carry_over: &[&str],
) -> Result<Restored, PayloadError> {
    let name = root
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| write_err(root, std::io::Error::other("the home has no usable name")))?
        .to_owned();
    let parent = match root.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| write_err(&parent, e))?;
    let staged = parent.join(format!(
        ".{name}.restoring-{}-{}",
        std::process::id(),
        hex::encode(claudemesh_crypto::keys::random_bytes::<4>())
    ));
    fs::create_dir(&staged).map_err(|e| write_err(&staged, e))?;
    let written = fill(&staged, root, payload, carry_over).and_then(|n| {
        check_home(&staged).map_err(PayloadError::Malformed)?;
        Ok(n)
    });
    let files = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_dir_all(&staged);
            return Err(e);
        }
    };
    let previous = match fs::symlink_metadata(root) {
        Ok(_) => {
            let mut dated = parent.join(format!("{name}.before-restore-{stamp}"));
            let mut n = 2;
            while fs::symlink_metadata(&dated).is_ok() {
                dated = parent.join(format!("{name}.before-restore-{stamp}-{n}"));
                n += 1;
            }
            if let Err(e) = fs::rename(root, &dated) {
                let _ = fs::remove_dir_all(&staged);
                return Err(write_err(root, e));
            }
            Some(dated)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let _ = fs::remove_dir_all(&staged);
            return Err(read_err(root, e));
        }
    };
    if let Err(e) = fs::rename(&staged, root) {
        // Put the old home back where it was.
        if let Some(p) = &previous {
            let _ = fs::rename(p, root);
        }
        let _ = fs::remove_dir_all(&staged);
        return Err(write_err(root, e));
    }
    Ok(Restored {
        home: root.to_owned(),
        previous,
        files,
    })
}

/// Writes the payload's files (and the carried-over ones) under `dir`.
fn fill(
    dir: &Path,
    current: &Path,
    payload: &BackupPayload,
    carry_over: &[&str],
) -> Result<usize, PayloadError> {
    let local = |e: crate::ClientError| write_err(dir, std::io::Error::other(e.to_string()));
    ensure_private_dir(dir).map_err(local)?;
    for f in &payload.files {
        // Every directory on the way is made 0700, not only the last.
        let mut path = dir.to_owned();
        let parts: Vec<&str> = f.path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            if i + 1 < parts.len() {
                ensure_private_dir(&path).map_err(local)?;
            }
        }
        write_private_file(&path, &f.bytes()?).map_err(local)?;
    }
    for name in carry_over {
        let from = current.join(name);
        match fs::read(&from) {
            Ok(bytes) => {
                let to = dir.join(name);
                let mut opts = fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    opts.mode(0o600);
                }
                let mut file = opts.open(&to).map_err(|e| write_err(&to, e))?;
                file.write_all(&bytes).map_err(|e| write_err(&to, e))?;
                file.sync_all().map_err(|e| write_err(&to, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(read_err(&from, e)),
        }
    }
    Ok(payload.files.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::{MeshConfig, MeshKeys};
    use claudemesh_crypto::{Hash32, MeshId, SigningKey};

    fn home_with_mesh(root: &Path) -> MeshId {
        let mut home = Home::open(root).unwrap();
        let id = MeshId(Hash32([0xab; 32]));
        home.add_mesh(MeshConfig {
            id,
            name: "team".into(),
            broker_url: "ws://127.0.0.1:1".into(),
            display_name: "alice".into(),
            peer_type: Default::default(),
            joined_at: 1,
            status: Default::default(),
            summary: Some("hi".into()),
            ca: None,
        })
        .unwrap();
        home.save_keys(
            &id,
            &MeshKeys {
                member: SigningKey::generate(),
                invite: None,
                sessions: Default::default(),
                roots: Default::default(),
            },
        )
        .unwrap();
        id
    }

    #[test]
    fn collect_takes_every_mesh_file_but_locks_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let id = home_with_mesh(&root);
        let mesh_dir = root.join("meshes").join(&id.to_hex()[..16]);
        fs::write(mesh_dir.join("pins.json"), b"{\"pins\":[]}").unwrap();
        fs::write(mesh_dir.join("grants.bin"), [0xff, 0x00, 0x80]).unwrap();
        fs::write(mesh_dir.join("keys.lock"), b"").unwrap();
        fs::write(root.join("state.db"), b"sqlite").unwrap();
        fs::write(root.join("policy.yaml"), b"approval_mode: write\n").unwrap();
        let p = collect(&root, 5).unwrap();
        let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
        let d = &id.to_hex()[..16];
        assert_eq!(
            paths,
            [
                "config.json".to_owned(),
                format!("meshes/{d}/grants.bin"),
                format!("meshes/{d}/keys.json"),
                format!("meshes/{d}/pins.json"),
                "policy.yaml".to_owned(),
            ]
        );
        let bin = p.file(&format!("meshes/{d}/grants.bin")).unwrap();
        assert_eq!(bin.encoding, FileEncoding::Hex);
        assert_eq!(&bin.bytes().unwrap()[..], &[0xff, 0x00, 0x80]);
        // Round trip through JSON, then restore over an existing home.
        let back = BackupPayload::parse(&p.to_json().unwrap()).unwrap();
        assert_eq!(back.meshes(), vec![(id.to_hex(), "team".to_owned())]);
        fs::write(root.join("audit.log"), b"line\n").unwrap();
        let r = restore(&root, &back, "20260101-000000", &["audit.log"]).unwrap();
        let prev = r.previous.unwrap();
        assert!(prev.ends_with("home.before-restore-20260101-000000"));
        assert!(prev.join("state.db").exists());
        assert!(!root.join("state.db").exists());
        assert_eq!(fs::read(root.join("audit.log")).unwrap(), b"line\n");
        assert_eq!(
            fs::read(root.join("meshes").join(d).join("grants.bin")).unwrap(),
            [0xff, 0x00, 0x80]
        );
        let home = Home::open(&root).unwrap();
        assert_eq!(home.meshes()[0].summary.as_deref(), Some("hi"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&root), 0o700);
            assert_eq!(mode(&root.join("meshes")), 0o700);
            assert_eq!(mode(&root.join("meshes").join(d)), 0o700);
            assert_eq!(mode(&root.join("meshes").join(d).join("keys.json")), 0o600);
            assert_eq!(mode(&root.join("audit.log")), 0o600);
        }
        // A second restore the same second keeps both copies.
        let r2 = restore(&root, &back, "20260101-000000", &[]).unwrap();
        assert!(
            r2.previous
                .unwrap()
                .ends_with("home.before-restore-20260101-000000-2")
        );
    }

    #[test]
    fn hostile_or_broken_payloads_touch_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        home_with_mesh(&root);
        let good = collect(&root, 5).unwrap().to_json().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        for bad in [
            "../escape",
            "/etc/passwd",
            "state.db",
            "meshes/zz/keys.json",
            "meshes/abababababababab/../x",
        ] {
            v["files"][0]["path"] = bad.into();
            let err = BackupPayload::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert!(matches!(err, PayloadError::Malformed(_)), "{bad}: {err}");
        }
        let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        v["format"] = "claudemesh-backup/2".into();
        assert!(matches!(
            BackupPayload::parse(&serde_json::to_vec(&v).unwrap()),
            Err(PayloadError::UnknownFormat(_))
        ));
        // A damaged key file decrypts fine but does not restore.
        let mut p = BackupPayload::parse(&good).unwrap();
        for f in &mut p.files {
            if f.path.ends_with("keys.json") {
                f.content = Zeroizing::new("{}".into());
            }
        }
        let before = fs::read(root.join("config.json")).unwrap();
        assert!(matches!(
            restore(&root, &p, "x", &[]),
            Err(PayloadError::Malformed(_))
        ));
        assert_eq!(fs::read(root.join("config.json")).unwrap(), before);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the fresh directory was removed");
    }
}
