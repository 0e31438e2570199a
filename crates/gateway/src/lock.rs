//! One gateway per home: `serve.lock` in the home, held (an exclusive
//! advisory lock) for as long as the gateway runs. Two gateways on one
//! home would run two sessions of each mesh under one name, fight over the
//! inbox and answer the same keys from two addresses. The file also says
//! where the running gateway listens, so a second `serve` can tell the
//! user.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another gateway runs on this home.
    #[error("another gateway already serves this home ({holder})")]
    Held {
        /// What the running gateway wrote: its pid and address.
        holder: String,
    },
    /// The file could not be opened, locked or written.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// `serve.lock`.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending, however it ends)
/// releases it.
#[derive(Debug)]
pub struct GatewayLock {
    file: File,
    path: PathBuf,
}

impl GatewayLock {
    /// Takes `<home>/serve.lock` without waiting, and records `listening`
    /// (an address, or a socket path) with this process's id.
    pub fn acquire(home: &Path, listening: &str) -> Result<Self, LockError> {
        let path = home.join("serve.lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut opts = OpenOptions::new();
        opts.create(true).truncate(false).read(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut file = opts.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // What the holder wrote is only a hint; an unreadable file
                // still means "held".
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    holder: if holder.is_empty() {
                        "no details".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut lock = GatewayLock { file, path };
        lock.listening(listening)?;
        Ok(lock)
    }

    /// Records where the gateway listens, once bound (with port 0 the
    /// port is known only then).
    pub fn listening(&mut self, listening: &str) -> Result<(), LockError> {
        let io = |source| LockError::Io {
            path: self.path.clone(),
            source,
        };
        let file = &mut self.file;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "pid {} listening on {listening}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the gateway running on `home` listens (what it wrote after
    /// `listening on `), or `None` when none runs.
    pub fn running(home: &Path) -> Result<Option<String>, LockError> {
        let path = home.join("serve.lock");
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LockError::Io { path, source }),
        };
        match file.try_lock_shared() {
            // Nobody holds it: no gateway runs (ours goes when `file` does).
            Ok(()) => Ok(None),
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                file.read_to_string(&mut text)
                    .map_err(|source| LockError::Io { path, source })?;
                Ok(Some(text.trim().split_once("listening on ").map_or_else(
                    || text.trim().to_owned(),
                    |(_, at)| at.trim().to_owned(),
                )))
            }
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_gateway_is_told_who_holds_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let first = GatewayLock::acquire(dir.path(), "127.0.0.1:7901").unwrap();
        match GatewayLock::acquire(dir.path(), "127.0.0.1:7902") {
            Err(LockError::Held { holder }) => {
                assert!(holder.contains("127.0.0.1:7901"), "{holder}");
                assert!(holder.contains(&std::process::id().to_string()), "{holder}");
            }
            other => panic!("expected Held, got {other:?}"),
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(first.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut first = first;
        first.listening("http://127.0.0.1:40123").unwrap();
        assert_eq!(
            GatewayLock::running(dir.path()).unwrap().as_deref(),
            Some("http://127.0.0.1:40123")
        );
        match GatewayLock::acquire(dir.path(), "127.0.0.1:0") {
            Err(LockError::Held { holder }) => {
                assert!(
                    holder.ends_with("listening on http://127.0.0.1:40123"),
                    "{holder}"
                );
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert_eq!(GatewayLock::running(dir.path()).unwrap(), None);
        let again = GatewayLock::acquire(dir.path(), "/run/cm.sock").unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert!(
            text.contains("/run/cm.sock") && !text.contains("7901"),
            "{text}"
        );
    }
}
