//! The claudemesh home directory (`--home`, `CLAUDEMESH_HOME`, default
//! `~/.claudemesh`): which meshes this device belongs to (`config.json`),
//! each mesh's secret keys (`meshes/<id>/keys.json`), and the local state
//! database (`state.db`). The directory is 0700 and every file in it 0600
//! (TM9); files are replaced atomically (write, fsync, rename) so a crash
//! never leaves half a key file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use claudemesh_crypto::cert::{SessionCert, SessionIdentity};
use claudemesh_crypto::log::PeerType;
use claudemesh_crypto::{EpochRootKey, MeshId, SigningKey};
use claudemesh_proto::frames::Status;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::ClientError;

/// The environment variable that chooses the home directory.
pub const HOME_ENV: &str = "CLAUDEMESH_HOME";
/// Version of `config.json`.
pub const CONFIG_VERSION: u32 = 1;

/// One mesh this device belongs to (non-secret facts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshConfig {
    /// The mesh id (hash of its genesis entry).
    pub id: MeshId,
    /// The mesh's name (from its creator; shown locally only).
    pub name: String,
    /// The broker's websocket URL.
    pub broker_url: String,
    /// This member's display name in the mesh.
    pub display_name: String,
    /// This member's peer type.
    #[serde(default)]
    pub peer_type: PeerType,
    /// When this device created or joined it, unix seconds.
    pub joined_at: u64,
    /// The status this member announces when it connects.
    #[serde(default)]
    pub status: Status,
    /// The one-line summary it announces (encrypted on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The private CA (PEM certificates, the contents, not a path) trusted
    /// for this mesh's `wss://` broker besides the platform roots: the
    /// `--ca` the mesh was created or joined with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

impl MeshConfig {
    /// The first 8 hex digits of the id.
    pub fn short_id(&self) -> String {
        self.id.to_hex()[..8].to_owned()
    }
}

/// `config.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HomeConfig {
    /// Format version.
    pub version: u32,
    /// The mesh commands use when `--mesh` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mesh: Option<MeshId>,
    /// Every mesh this device belongs to.
    #[serde(default)]
    pub meshes: Vec<MeshConfig>,
}

/// A session key and its certificate, as stored.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSession {
    key: Zeroizing<String>,
    cert: SessionCert,
}

/// `keys.json`: the secrets of one mesh on this device.
#[derive(Clone, Serialize, Deserialize)]
struct StoredKeys {
    /// libsodium `seed‖pk`, 128 hex.
    member: Zeroizing<String>,
    /// The invite key this device joined with. No longer written: rekeys
    /// seal to members only, so it opens nothing; read for key files that
    /// still have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    invite: Option<Zeroizing<String>>,
    /// Named session keys (`cli`, MCP sessions).
    #[serde(default)]
    sessions: BTreeMap<String, StoredSession>,
    /// Epoch root keys this device holds, by epoch, 64 hex each.
    #[serde(default)]
    roots: BTreeMap<u64, Zeroizing<String>>,
}

/// The secret keys of one mesh on this device. Never printed.
#[derive(Clone)]
pub struct MeshKeys {
    /// The member key.
    pub member: SigningKey,
    /// The invite key used to join, from key files written before rekeys
    /// stopped sealing to invite keys (opens nothing now; never written).
    pub invite: Option<SigningKey>,
    /// Named sessions.
    pub sessions: BTreeMap<String, SessionIdentity>,
    /// Root keys by epoch.
    pub roots: BTreeMap<u64, EpochRootKey>,
}

impl std::fmt::Debug for MeshKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshKeys")
            .field("member", &self.member.public())
            .field("sessions", &self.sessions.keys().collect::<Vec<_>>())
            .field("epochs", &self.roots.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MeshKeys {
    fn to_stored(&self) -> StoredKeys {
        StoredKeys {
            member: self.member.to_keypair_hex(),
            invite: self.invite.as_ref().map(SigningKey::to_keypair_hex),
            sessions: self
                .sessions
                .iter()
                .map(|(name, s)| {
                    (
                        name.clone(),
                        StoredSession {
                            key: s.key.to_keypair_hex(),
                            cert: s.cert.clone(),
                        },
                    )
                })
                .collect(),
            roots: self
                .roots
                .iter()
                .map(|(e, k)| (*e, Zeroizing::new(hex::encode(k.key().as_bytes()))))
                .collect(),
        }
    }

    fn from_stored(s: &StoredKeys) -> Result<Self, String> {
        let member =
            SigningKey::from_keypair_hex(&s.member).map_err(|e| format!("member key: {e}"))?;
        let invite = s
            .invite
            .as_ref()
            .map(|k| SigningKey::from_keypair_hex(k).map_err(|e| format!("invite key: {e}")))
            .transpose()?;
        let mut sessions = BTreeMap::new();
        for (name, st) in &s.sessions {
            let key = SigningKey::from_keypair_hex(&st.key)
                .map_err(|e| format!("session {name}: {e}"))?;
            if key.public() != st.cert.session || st.cert.member != member.public() {
                return Err(format!(
                    "session {name}: certificate does not match its keys"
                ));
            }
            sessions.insert(
                name.clone(),
                SessionIdentity {
                    key,
                    cert: st.cert.clone(),
                },
            );
        }
        let mut roots = BTreeMap::new();
        for (epoch, hexkey) in &s.roots {
            let bytes = Zeroizing::new(
                claudemesh_crypto::encoding::decode_hex_array::<32>(hexkey)
                    .map_err(|e| format!("root key of epoch {epoch}: {e}"))?,
            );
            roots.insert(*epoch, EpochRootKey::from_bytes(*epoch, *bytes));
        }
        Ok(MeshKeys {
            member,
            invite,
            sessions,
            roots,
        })
    }
}

/// An open home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    config: HomeConfig,
}

/// The home directory to use: an explicit path, else `CLAUDEMESH_HOME`, else
/// `~/.claudemesh`.
pub fn resolve_home(explicit: Option<&Path>) -> Result<PathBuf, ClientError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(p) = std::env::var_os(HOME_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".claudemesh")),
        None => Err(ClientError::Local(
            "cannot find the home directory: set HOME or CLAUDEMESH_HOME, or pass --home".into(),
        )),
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Local(format!("{what} {}: {e}", path.display()))
}

/// Creates `dir` (and parents) with mode 0700, and tightens it if it exists.
pub fn ensure_private_dir(dir: &Path) -> Result<(), ClientError> {
    fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    set_mode(dir, 0o700)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), ClientError> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("cannot set permissions of", path, e))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), ClientError> {
    Ok(())
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    write_atomic(path, bytes, 0o600).map_err(|e| io_err("cannot write", path, e))
}

/// Replaces `path` with `bytes` so that a reader, or the file after a
/// crash, holds either the old bytes or the new ones, never part of them:
/// a new temporary file beside it (mode `mode` on unix, whatever the
/// umask), written and fsynced, renamed over `path`, then the directory
/// fsynced so the rename itself is durable. The home's files, and the
/// command line's run entries, backups and edits of Claude Code's files,
/// are all written with it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Two writers of one file in one process never share a temporary name.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    // A file of this process's from an earlier run with the same pid is
    // overwritten, not an error.
    fn write_synced(tmp: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(mode);
        }
        let mut f = opts.open(tmp)?;
        // The umask may have narrowed the mode; the caller's is the one meant.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        f.write_all(bytes)?;
        f.sync_all()
    }
    let written = write_synced(&tmp, bytes, mode).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Best effort: not every platform or file system can sync a directory,
    // and the new bytes are in place either way.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Home {
    /// Opens (creating if needed) the home at `root`.
    pub fn open(root: &Path) -> Result<Self, ClientError> {
        ensure_private_dir(root)?;
        let path = root.join("config.json");
        let config = match fs::read(&path) {
            Ok(bytes) => {
                let c: HomeConfig = serde_json::from_slice(&bytes).map_err(|e| {
                    ClientError::Local(format!(
                        "{} is not valid ({e}); fix or restore it from a backup",
                        path.display()
                    ))
                })?;
                if c.version > CONFIG_VERSION {
                    return Err(ClientError::Local(format!(
                        "{} was written by a newer claudemesh (version {}); upgrade claudemesh",
                        path.display(),
                        c.version
                    )));
                }
                c
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HomeConfig {
                version: CONFIG_VERSION,
                ..HomeConfig::default()
            },
            Err(e) => return Err(io_err("cannot read", &path, e)),
        };
        Ok(Home {
            root: root.to_owned(),
            config,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local state database file.
    pub fn state_db_path(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// The configuration.
    pub fn config(&self) -> &HomeConfig {
        &self.config
    }

    /// Every mesh.
    pub fn meshes(&self) -> &[MeshConfig] {
        &self.config.meshes
    }

    /// Saves `config.json`.
    pub fn save(&self) -> Result<(), ClientError> {
        let json = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| ClientError::Local(format!("cannot encode config: {e}")))?;
        write_private_file(&self.root.join("config.json"), &json)
    }

    /// Adds (or replaces) a mesh; the first one becomes the default.
    pub fn add_mesh(&mut self, mesh: MeshConfig) -> Result<(), ClientError> {
        self.config.meshes.retain(|m| m.id != mesh.id);
        if self.config.default_mesh.is_none() {
            self.config.default_mesh = Some(mesh.id);
        }
        self.config.meshes.push(mesh);
        self.save()
    }

    /// Changes a mesh's settings.
    pub fn update_mesh(
        &mut self,
        id: &MeshId,
        change: impl FnOnce(&mut MeshConfig),
    ) -> Result<(), ClientError> {
        let mesh = self
            .config
            .meshes
            .iter_mut()
            .find(|m| &m.id == id)
            .ok_or_else(|| ClientError::NoSuchMesh(id.to_hex()))?;
        change(mesh);
        self.save()
    }

    /// Forgets a mesh this device left or was removed from: its settings in
    /// `config.json` and its key directory. If it was the default, the
    /// first remaining mesh (if any) becomes the default.
    pub fn forget_mesh(&mut self, id: &MeshId) -> Result<(), ClientError> {
        self.config.meshes.retain(|m| &m.id != id);
        if self.config.default_mesh == Some(*id) {
            self.config.default_mesh = self.config.meshes.first().map(|m| m.id);
        }
        self.save()?;
        let dir = self.mesh_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("cannot remove", &dir, e)),
        }
    }

    /// Makes a mesh the default.
    pub fn set_default(&mut self, id: MeshId) -> Result<(), ClientError> {
        self.config.default_mesh = Some(id);
        self.save()
    }

    /// Picks a mesh: by name or id prefix when given, else the default, else
    /// the only one.
    pub fn select_mesh(&self, selector: Option<&str>) -> Result<&MeshConfig, ClientError> {
        let meshes = &self.config.meshes;
        if meshes.is_empty() {
            return Err(ClientError::NoMesh);
        }
        match selector {
            Some(sel) => {
                let sel_lower = sel.to_ascii_lowercase();
                let by_name: Vec<_> = meshes.iter().filter(|m| m.name == sel).collect();
                if by_name.len() == 1 {
                    return Ok(by_name[0]);
                }
                let by_id: Vec<_> = meshes
                    .iter()
                    .filter(|m| sel_lower.len() >= 4 && m.id.to_hex().starts_with(&sel_lower))
                    .collect();
                match (by_name.len(), by_id.len()) {
                    (0, 1) => Ok(by_id[0]),
                    (0, 0) => Err(ClientError::NoSuchMesh(sel.to_owned())),
                    _ => Err(ClientError::AmbiguousMesh(sel.to_owned())),
                }
            }
            None => {
                if let Some(d) = self.config.default_mesh
                    && let Some(m) = meshes.iter().find(|m| m.id == d)
                {
                    return Ok(m);
                }
                if meshes.len() == 1 {
                    Ok(&meshes[0])
                } else {
                    Err(ClientError::AmbiguousMesh(
                        "(none given; pass --mesh <name>)".into(),
                    ))
                }
            }
        }
    }

    fn mesh_dir(&self, id: &MeshId) -> PathBuf {
        self.root.join("meshes").join(&id.to_hex()[..16])
    }

    /// The path of a file in a mesh's private directory (created 0700 if
    /// missing): `keys.json`, `pins.json`, …
    pub fn mesh_file(&self, id: &MeshId, name: &str) -> PathBuf {
        let dir = self.mesh_dir(id);
        // A failure shows when the file itself is written.
        let _ =
            ensure_private_dir(&self.root.join("meshes")).and_then(|()| ensure_private_dir(&dir));
        dir.join(name)
    }

    /// The path of a mesh's key file.
    pub fn keys_path(&self, id: &MeshId) -> PathBuf {
        self.mesh_dir(id).join("keys.json")
    }

    /// Writes a mesh's keys (0600 in a 0700 directory).
    pub fn save_keys(&self, id: &MeshId, keys: &MeshKeys) -> Result<(), ClientError> {
        let dir = self.mesh_dir(id);
        ensure_private_dir(&self.root.join("meshes"))?;
        ensure_private_dir(&dir)?;
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(&keys.to_stored())
                .map_err(|e| ClientError::Local(format!("cannot encode keys: {e}")))?,
        );
        write_private_file(&dir.join("keys.json"), &json)
    }

    /// Re-reads a mesh's keys, applies `change`, and writes them back, under
    /// an exclusive lock on `keys.lock`: several claudemesh processes (the
    /// CLI, MCP servers) share one home, and none may lose another's session
    /// or root key.
    pub fn update_keys<T>(
        &self,
        id: &MeshId,
        change: impl FnOnce(&mut MeshKeys) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let dir = self.mesh_dir(id);
        ensure_private_dir(&self.root.join("meshes"))?;
        ensure_private_dir(&dir)?;
        let lock_path = dir.join("keys.lock");
        let mut opts = fs::OpenOptions::new();
        opts.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let lock = opts
            .open(&lock_path)
            .map_err(|e| io_err("cannot open", &lock_path, e))?;
        lock.lock()
            .map_err(|e| io_err("cannot lock", &lock_path, e))?;
        let mut keys = self.load_keys(id)?;
        let out = change(&mut keys)?;
        self.save_keys(id, &keys)?;
        drop(lock);
        Ok(out)
    }

    /// Reads a mesh's keys.
    pub fn load_keys(&self, id: &MeshId) -> Result<MeshKeys, ClientError> {
        let path = self.keys_path(id);
        let bytes = Zeroizing::new(fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?);
        let stored: StoredKeys = serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Local(format!(
                "{} is damaged ({e}); restore it from a backup",
                path.display()
            ))
        })?;
        MeshKeys::from_stored(&stored).map_err(|e| {
            ClientError::Local(format!(
                "{} is damaged ({e}); restore it from a backup",
                path.display()
            ))
        })
    }

    /// Removes a mesh's key directory (only for a join that never completed).
    pub fn discard_keys(&self, id: &MeshId) {
        let _ = fs::remove_dir_all(self.mesh_dir(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::Hash32;

    #[test]
    fn keys_roundtrip_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let home = Home::open(&root).unwrap();
        let id = MeshId(Hash32([7; 32]));
        let member = SigningKey::generate();
        let session = SessionIdentity::new(&member, id, 1_700_000_000, 3600).unwrap();
        let mut keys = MeshKeys {
            member: member.clone(),
            invite: None,
            sessions: BTreeMap::from([("cli".to_owned(), session)]),
            roots: BTreeMap::new(),
        };
        keys.roots.insert(0, EpochRootKey::from_bytes(0, [3; 32]));
        home.save_keys(&id, &keys).unwrap();
        let back = home.load_keys(&id).unwrap();
        assert_eq!(back.member, member);
        assert_eq!(back.roots[&0], keys.roots[&0]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&root), 0o700);
            assert_eq!(mode(&home.keys_path(&id)), 0o600);
            assert_eq!(mode(home.keys_path(&id).parent().unwrap()), 0o700);
        }
        assert!(!format!("{back:?}").contains(&hex::encode(member.seed().as_slice())));
    }

    #[test]
    fn damaged_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.json"), b"{not json").unwrap();
        let err = Home::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn mesh_selection() {
        let dir = tempfile::tempdir().unwrap();
        let mut home = Home::open(dir.path()).unwrap();
        assert!(matches!(home.select_mesh(None), Err(ClientError::NoMesh)));
        let m = |b: u8, name: &str| MeshConfig {
            id: MeshId(Hash32([b; 32])),
            name: name.into(),
            broker_url: "ws://127.0.0.1:1".into(),
            display_name: "me".into(),
            peer_type: PeerType::Human,
            joined_at: 0,
            status: Status::Idle,
            summary: None,
            ca: None,
        };
        home.add_mesh(m(0xaa, "one")).unwrap();
        home.add_mesh(m(0xbb, "two")).unwrap();
        assert_eq!(home.select_mesh(None).unwrap().name, "one");
        assert_eq!(home.select_mesh(Some("two")).unwrap().name, "two");
        assert_eq!(home.select_mesh(Some("bbbb")).unwrap().name, "two");
        assert!(matches!(
            home.select_mesh(Some("three")),
            Err(ClientError::NoSuchMesh(_))
        ));
        let reopened = Home::open(dir.path()).unwrap();
        assert_eq!(reopened.meshes().len(), 2);
    }
}
