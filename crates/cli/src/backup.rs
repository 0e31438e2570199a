//! `claudemesh backup [FILE]` and `claudemesh restore <FILE>` (TM9): the
//! passphrase (`--passphrase-file`, `CLAUDEMESH_PASSPHRASE`, or asked on
//! the terminal without echo), the Argon2id derivation with a progress
//! line, writing the `.cmb` file without clobbering, and restoring only
//! after the whole file decrypted and checked out. The file format is
//! `claudemesh_crypto::backup`, the payload `claudemesh_client::backup`.
//! `restore` asks the policy itself, once the backup has opened.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use claudemesh_client::backup::{self as payload, BackupPayload, PayloadError};
use claudemesh_client::home::{resolve_home, write_atomic};
use claudemesh_crypto::backup::{
    BackupError, BackupHeader, BackupParams, MIN_PASSPHRASE_CHARS, derive_backup_key, new_header,
    open_with_key, seal_with_key,
};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::output;
use crate::policy::{self, Policy, Request, Verb, audit_log};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write it [default: claudemesh-backup-<date>.cmb here]
    pub file: Option<PathBuf>,
    /// Replace the file if it exists
    #[arg(long)]
    pub force: bool,
    /// Read the passphrase from the first line of this file (else
    /// $CLAUDEMESH_PASSPHRASE, else it is asked twice on the terminal)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup (.cmb) `claudemesh backup` wrote
    pub file: PathBuf,
    /// Read the passphrase from the first line of this file (else
    /// $CLAUDEMESH_PASSPHRASE, else it is asked on the terminal)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl BackupArgs {
    /// What it asks the policy. (`restore` asks in [`restore`], once the
    /// backup has opened.)
    pub fn request(&self) -> Request {
        let file = self.file.as_ref().map(|f| f.display().to_string());
        Request::new(Verb::Backup, file.as_deref(), false)
    }
}

/// The environment variable scripts pass the passphrase in.
pub const PASSPHRASE_ENV: &str = "CLAUDEMESH_PASSPHRASE";

/// The Argon2id cost of new backups: 256 MiB, 3 passes, 1 lane
/// (libsodium's MODERATE; 0.6-0.9 s on the 2-core reference machine, see
/// docs/security.md §11).
pub fn params() -> BackupParams {
    BackupParams::default()
}

#[derive(Serialize)]
struct MeshRef {
    id: String,
    name: String,
}

fn mesh_refs(p: &BackupPayload) -> Vec<MeshRef> {
    p.meshes()
        .into_iter()
        .map(|(id, name)| MeshRef { id, name })
        .collect()
}

fn mesh_words(meshes: &[MeshRef]) -> String {
    let names: Vec<&str> = meshes.iter().map(|m| m.name.as_str()).collect();
    match names.len() {
        0 => "no mesh".to_owned(),
        1 => format!("1 mesh ({})", names[0]),
        n => format!("{n} meshes ({})", names.join(", ")),
    }
}

/// `2026-11-25T10:00:03Z`.
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `20261125-100003` (UTC), for the dated copy of a home.
fn stamp(t: SystemTime) -> String {
    let s = rfc3339(t);
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    match (digits.get(..8), digits.get(8..14)) {
        (Some(day), Some(time)) => format!("{day}-{time}"),
        _ => digits,
    }
}

fn crypto_failure(e: BackupError, file: &Path) -> Failure {
    let f = file.display();
    match e {
        BackupError::NotABackup => Failure::new(
            exit::USAGE,
            format!("{f} is not a claudemesh backup (.cmb) file"),
        )
        .hint("give the file `claudemesh backup` wrote; nothing was restored"),
        BackupError::UnsupportedVersion(_) | BackupError::UnsupportedKdf(_) => {
            Failure::new(exit::USAGE, format!("{f}: {e}"))
                .hint("a newer claudemesh wrote it: upgrade claudemesh; nothing was restored")
        }
        BackupError::PassphraseTooShort => Failure::new(
            exit::USAGE,
            format!("the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters"),
        ),
        BackupError::Truncated => Failure::new(exit::SECURITY, format!("{f}: {e}"))
            .hint("copy the whole file again; nothing was restored"),
        BackupError::ParametersOutOfRange(_) => Failure::new(exit::SECURITY, format!("{f}: {e}"))
            .hint("the file was altered or not written by claudemesh; nothing was restored"),
        BackupError::WrongPassphraseOrCorrupted => Failure::new(
            exit::SECURITY,
            format!("{f} does not open: wrong passphrase, or the file is damaged or altered"),
        )
        .hint("check the passphrase (it is case-sensitive); nothing was restored"),
    }
}

fn payload_failure(e: PayloadError) -> Failure {
    let (code, hint) = match &e {
        PayloadError::Read { .. } | PayloadError::Write { .. } => (exit::IO, None),
        PayloadError::DamagedHome(_) => (
            exit::IO,
            Some("fix or restore that file first: a backup of it would not restore"),
        ),
        PayloadError::NothingToBackUp => (
            exit::NOT_FOUND,
            Some("create a mesh (claudemesh mesh create) or join one first"),
        ),
        PayloadError::Malformed(_) => (
            exit::USAGE,
            Some("this file was not written by `claudemesh backup`; nothing was restored"),
        ),
        PayloadError::UnknownFormat(_) => (
            exit::USAGE,
            Some("a newer claudemesh wrote it: upgrade claudemesh; nothing was restored"),
        ),
    };
    let f = Failure::new(code, e.to_string());
    match hint {
        Some(h) => f.hint(h),
        None => f,
    }
}

fn check_length(p: &str) -> Result<(), Failure> {
    if p.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(Failure::new(
            exit::USAGE,
            format!("the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters"),
        )
        .hint("use a few words you can remember; it protects every key on this device"));
    }
    Ok(())
}

fn prompt(text: &str) -> Result<Zeroizing<String>, Failure> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|e| Failure::new(exit::IO, format!("cannot read the passphrase: {e}")))
}

/// The passphrase: from `--passphrase-file` (its first line), else
/// `CLAUDEMESH_PASSPHRASE`, else asked on the terminal (twice when
/// `confirm`). Never printed.
fn passphrase(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<String>, Failure> {
    let pass = if let Some(path) = file {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            Failure::new(
                exit::IO,
                format!("cannot read the passphrase file {}: {e}", path.display()),
            )
        })?);
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Failure::new(
                exit::USAGE,
                format!("the passphrase file {} is not UTF-8 text", path.display()),
            )
        })?;
        let first = text.split('\n').next().unwrap_or_default();
        Zeroizing::new(first.strip_suffix('\r').unwrap_or(first).to_owned())
    } else if let Some(v) = std::env::var_os(PASSPHRASE_ENV) {
        Zeroizing::new(v.into_string().map_err(|_| {
            Failure::new(exit::USAGE, format!("{PASSPHRASE_ENV} is not valid UTF-8"))
        })?)
    } else if std::io::stdin().is_terminal() {
        let first = prompt(if confirm {
            "Passphrase for the backup (12 characters or more): "
        } else {
            "Passphrase of the backup: "
        })?;
        check_length(&first)?;
        if confirm {
            let again = prompt("The same passphrase again: ")?;
            if *again != *first {
                return Err(Failure::new(
                    exit::USAGE,
                    "the two passphrases differ; nothing was written",
                )
                .hint("run it again and type the same passphrase twice"));
            }
        }
        first
    } else {
        return Err(Failure::new(
            exit::USAGE,
            "no passphrase: there is no terminal to ask for one",
        )
        .hint(format!(
            "pass --passphrase-file FILE, or set {PASSPHRASE_ENV}"
        )));
    };
    check_length(&pass)?;
    Ok(pass)
}

/// Runs `work` (the slow derivation) on a thread, drawing a spinner with
/// the elapsed time on stderr meanwhile when `show`.
fn with_progress<T: Send>(show: bool, label: &str, work: impl FnOnce() -> T + Send) -> T {
    if !show {
        return work();
    }
    std::thread::scope(|s| {
        let handle = s.spawn(work);
        let frames = ['|', '/', '-', '\\'];
        let started = Instant::now();
        let mut i = 0usize;
        let mut err = std::io::stderr();
        while !handle.is_finished() {
            let _ = write!(
                err,
                "\r{} {label} {:.1}s",
                frames[i % frames.len()],
                started.elapsed().as_secs_f64()
            );
            let _ = err.flush();
            i += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn show_progress(g: &Global) -> bool {
    std::io::stderr().is_terminal() && !g.quiet && !g.json
}

fn kdf_label(p: &BackupParams) -> String {
    format!(
        "deriving the key from the passphrase (Argon2id, {} MiB, {} passes)",
        p.m_cost_kib / 1024,
        p.t_cost
    )
}

/// Writes `bytes` to `path` (0600): atomically replacing it with `force`,
/// else only if nothing is there (a hard link from a temporary file, so a
/// file that appears meanwhile is not clobbered either).
fn write_backup_file(path: &Path, bytes: &[u8], force: bool) -> Result<(), Failure> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        Failure::new(exit::IO, format!("cannot {what} {}: {e}", p.display()))
    };
    if force {
        return write_atomic(path, bytes, 0o600).map_err(|e| io("write", path, e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("backup.cmb");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    if let Err(e) = write_atomic(&tmp, bytes, 0o600) {
        return Err(io("write", &tmp, e));
    }
    let placed = match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            // No hard links here: create it exclusively instead.
            write_exclusive(path, bytes)
        }
        other => other,
    };
    let _ = std::fs::remove_file(&tmp);
    match placed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists(path)),
        Err(e) => Err(io("write", path, e)),
    }
}

fn write_exclusive(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes).and_then(|()| f.sync_all())
}

fn exists(path: &Path) -> Failure {
    Failure::new(exit::EXISTS, format!("{} already exists", path.display()))
        .hint("choose another file, or pass --force to replace it")
}

#[derive(Serialize)]
struct KdfJson {
    algorithm: &'static str,
    m_cost_kib: u32,
    t_cost: u32,
    parallelism: u8,
    ms: u64,
}

/// `claudemesh backup [FILE]`.
pub fn backup(g: &Global, a: BackupArgs) -> Outcome {
    let root = resolve_home(g.home.as_deref())?;
    let now = SystemTime::now();
    let file = a.file.unwrap_or_else(|| {
        let stamp = rfc3339(now);
        let day = stamp.get(..10).unwrap_or("undated");
        PathBuf::from(format!("claudemesh-backup-{day}.cmb"))
    });
    if !a.force && std::fs::symlink_metadata(&file).is_ok() {
        return Err(exists(&file));
    }
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let payload = payload::collect(&root, secs).map_err(payload_failure)?;
    let json = payload.to_json().map_err(payload_failure)?;
    let pass = passphrase(a.passphrase_file.as_deref(), true)?;
    let params = params();
    let header = new_header(params).map_err(|e| crypto_failure(e, &file))?;
    let started = Instant::now();
    let key = with_progress(show_progress(g), &kdf_label(&params), || {
        derive_backup_key(&pass, &header)
    })
    .map_err(|e| crypto_failure(e, &file))?;
    let took = started.elapsed();
    drop(pass);
    let sealed = seal_with_key(&header, &key, &json);
    // What was written must open with the same key.
    open_with_key(&header, &key, &sealed).map_err(|e| {
        Failure::new(
            exit::INTERNAL,
            format!("the backup did not open again after sealing ({e}); nothing was written"),
        )
    })?;
    write_backup_file(&file, &sealed, a.force)?;
    let meshes = mesh_refs(&payload);
    let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    if g.json {
        output::json(&serde_json::json!({
            "file": file.display().to_string(),
            "bytes": sealed.len(),
            "meshes": meshes,
            "files": payload.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            "kdf": KdfJson {
                algorithm: "argon2id",
                m_cost_kib: params.m_cost_kib,
                t_cost: params.t_cost,
                parallelism: params.parallelism,
                ms,
            },
        }));
    } else if g.quiet {
        println!("{}", file.display());
    } else {
        println!(
            "Backed up {} to {} ({} files).",
            mesh_words(&meshes),
            file.display(),
            payload.files.len()
        );
        eprintln!(
            "Argon2id ({} MiB, {} passes) took {:.1} s. Anyone with this file and its passphrase can act as you: keep them apart.",
            params.m_cost_kib / 1024,
            params.t_cost,
            took.as_secs_f64()
        );
    }
    Ok(())
}

/// `claudemesh restore <FILE>`: everything is read, decrypted and checked
/// before the policy is settled and before anything in the home changes.
pub fn restore(g: &Global, a: RestoreArgs) -> Outcome {
    let policy = Policy::load(g)?;
    let root = policy.home().to_owned();
    let req = Request {
        verb: Verb::Restore,
        target: Some(a.file.display().to_string()),
        mesh_scoped: false,
    };
    let eval = policy.evaluate(&req);
    let plain_what = format!(
        "replace the home {} with the backup {}",
        root.display(),
        a.file.display()
    );
    if eval.refuses() {
        return policy.settle(&req, eval, None, &plain_what);
    }
    let bytes = std::fs::read(&a.file)
        .map_err(|e| Failure::new(exit::IO, format!("cannot read {}: {e}", a.file.display())))?;
    let header = BackupHeader::parse(&bytes).map_err(|e| crypto_failure(e, &a.file))?;
    let pass = passphrase(a.passphrase_file.as_deref(), false)?;
    let key = with_progress(show_progress(g), &kdf_label(&header.params), || {
        derive_backup_key(&pass, &header)
    })
    .map_err(|e| crypto_failure(e, &a.file))?;
    drop(pass);
    let plain = open_with_key(&header, &key, &bytes).map_err(|e| crypto_failure(e, &a.file))?;
    let payload = BackupPayload::parse(&plain).map_err(payload_failure)?;
    drop(plain);
    if let Some(p) = payload.file(policy::FILE) {
        let text = p.bytes().map_err(payload_failure)?;
        let check = std::str::from_utf8(&text)
            .map_err(|_| "it is not UTF-8 text".to_owned())
            .and_then(|t| {
                policy::check_text(t, &root.join(policy::FILE)).map_err(|e| e.to_string())
            });
        if let Err(e) = check {
            eprintln!(
                "warning: the backup's policy.yaml does not parse ({e}); fix it after restoring"
            );
        }
    }
    let meshes = mesh_refs(&payload);
    let what = format!(
        "replace the home {} with the backup {} ({}); the current home is kept beside it",
        root.display(),
        a.file.display(),
        mesh_words(&meshes)
    );
    policy.settle(&req, eval, None, &what)?;
    let restored = payload::restore(
        &root,
        &payload,
        &stamp(SystemTime::now()),
        &[audit_log::FILE],
    )
    .map_err(payload_failure)?;
    if g.json {
        output::json(&serde_json::json!({
            "restored": restored.home.display().to_string(),
            "previous": restored.previous.as_ref().map(|p| p.display().to_string()),
            "meshes": meshes,
            "files": restored.files,
        }));
    } else if !g.quiet {
        println!(
            "Restored {} into {}.",
            mesh_words(&meshes),
            restored.home.display()
        );
        if let Some(p) = &restored.previous {
            println!("The home that was there is kept at {}.", p.display());
        }
        eprintln!(
            "Each mesh's membership log is fetched and verified again from its broker at the next command; messages this device had read are in the previous home's state.db."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_dates_are_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_606_515);
        assert_eq!(stamp(t), "20261125-113515");
        assert!(rfc3339(t).starts_with("2026-11-25T"));
    }

    #[test]
    fn new_backups_meet_the_minimums() {
        let p = params();
        assert!(p.m_cost_kib >= claudemesh_crypto::backup::MIN_M_COST_KIB);
        assert!(p.t_cost >= claudemesh_crypto::backup::MIN_T_COST);
    }
}
