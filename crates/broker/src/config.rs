//! The broker's configuration: one struct, [`BrokerConfig`], with defaults,
//! filled from command-line flags, then `CLAUDEMESH_BROKER_*` environment
//! variables, then an optional YAML file, in that order of precedence.
//! `claudemesh-broker` with no arguments listens on 127.0.0.1:7900 and keeps
//! its data in an SQLite file in the platform data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7900";
/// Undelivered messages are kept this long by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address to listen on (HTTP and `/ws`).
    pub listen: SocketAddr,
    /// `sqlite://<file>` or `postgres://…`.
    pub database_url: String,
    /// This instance's id (in `challenge`, logs).
    pub broker_id: String,
    /// How long undelivered messages are kept before they expire.
    pub retention: Duration,
    /// How long to wait for another broker's migration lock at start.
    pub migration_lock_timeout: Duration,
    /// Frames per second per connection (sustained).
    pub rate_per_sec: u32,
    /// Frames per connection above the sustained rate.
    pub rate_burst: u32,
    /// Most messages and acks per group commit.
    pub max_batch: usize,
    /// Group-commit writers (connections committing in parallel); `None`:
    /// 1 on SQLite (one writer at a time anyway), 4 on Postgres.
    pub writers: Option<usize>,
    /// Whether anyone may register a new mesh (`mesh_create`).
    pub allow_mesh_create: bool,
    /// Log output format.
    pub log_format: LogFormat,
    /// PEM certificate chain to serve HTTPS and `wss://` with (with
    /// [`BrokerConfig::tls_key`]); `None`: plain HTTP and `ws://`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of [`BrokerConfig::tls_cert`].
    pub tls_key: Option<PathBuf>,
}

impl BrokerConfig {
    /// Defaults with the database in `dir` (used by tests and the demo).
    pub fn with_sqlite_file(path: &Path) -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: sqlite_url(path),
            ..Self::defaults(String::new())
        }
    }

    fn defaults(database_url: String) -> Self {
        BrokerConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7900))),
            database_url,
            broker_id: default_broker_id(),
            retention: DEFAULT_RETENTION,
            migration_lock_timeout: Duration::from_secs(60),
            rate_per_sec: claudemesh_proto::limits::RATE_PER_SEC,
            rate_burst: claudemesh_proto::limits::RATE_BURST,
            max_batch: 1024,
            writers: None,
            allow_mesh_create: true,
            log_format: LogFormat::Text,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// An SQLite URL for a file path.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn default_broker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "broker".to_owned());
    let mut id = format!("{host}-{}", std::process::id());
    id.truncate(claudemesh_proto::limits::MAX_LABEL_LEN);
    id
}

/// Command-line flags; each also reads its `CLAUDEMESH_BROKER_*` variable.
#[derive(Debug, Parser)]
#[command(
    name = "claudemesh-broker",
    version,
    about = "The claudemesh broker: routes and stores end-to-end encrypted messages; never sees a secret.",
    long_about = "The claudemesh broker: routes and stores end-to-end encrypted messages; never sees a secret.\n\n\
        With no arguments it listens on 127.0.0.1:7900 and keeps its data in an SQLite file in the \
        platform data directory. Precedence: flags, then CLAUDEMESH_BROKER_* environment variables, \
        then the --config file, then defaults."
)]
pub struct Args {
    /// Address to listen on (HTTP and /ws) [default: 127.0.0.1:7900]
    #[arg(long, env = "CLAUDEMESH_BROKER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// sqlite://<file> or postgres://user@host/db [default: SQLite in the data directory]
    #[arg(long, env = "CLAUDEMESH_BROKER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// YAML file with any of these settings (snake_case keys)
    #[arg(long, env = "CLAUDEMESH_BROKER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Instance id shown to clients and in logs [default: <hostname>-<pid>]
    #[arg(long, env = "CLAUDEMESH_BROKER_ID")]
    pub broker_id: Option<String>,
    /// How long undelivered messages are kept, e.g. 30d, 12h [default: 30d]
    #[arg(long, env = "CLAUDEMESH_BROKER_RETENTION")]
    pub retention: Option<humantime::Duration>,
    /// How long to wait for another broker's migration lock [default: 60s]
    #[arg(long, env = "CLAUDEMESH_BROKER_MIGRATION_LOCK_TIMEOUT")]
    pub migration_lock_timeout: Option<humantime::Duration>,
    /// Frames per second per connection [default: 500]
    #[arg(long, env = "CLAUDEMESH_BROKER_RATE_PER_SEC")]
    pub rate_per_sec: Option<u32>,
    /// Burst of frames per connection [default: 1000]
    #[arg(long, env = "CLAUDEMESH_BROKER_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Most messages per group commit [default: 1024]
    #[arg(long, env = "CLAUDEMESH_BROKER_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Group-commit writers in parallel [default: 1 on SQLite, 4 on Postgres]
    #[arg(long, env = "CLAUDEMESH_BROKER_WRITERS")]
    pub writers: Option<usize>,
    /// Whether anyone may register a new mesh [default: true]
    #[arg(long, env = "CLAUDEMESH_BROKER_ALLOW_MESH_CREATE")]
    pub allow_mesh_create: Option<bool>,
    /// Log format [default: text]
    #[arg(long, value_enum, env = "CLAUDEMESH_BROKER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// PEM certificate chain (leaf first, e.g. certbot's fullchain.pem):
    /// serve HTTPS and wss:// instead of plain HTTP and ws:// [needs --tls-key]
    #[arg(long, env = "CLAUDEMESH_BROKER_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (e.g. certbot's privkey.pem)
    #[arg(long, env = "CLAUDEMESH_BROKER_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Do not serve: ask the broker at the configured address whether it is
    /// ready (`GET /readyz`) and exit 0 if so, 1 if not (container health
    /// checks, where the image has no curl)
    #[arg(long)]
    pub health_check: bool,
}

/// The YAML configuration file: the same settings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Args::listen`].
    pub listen: Option<SocketAddr>,
    /// See [`Args::database_url`].
    pub database_url: Option<String>,
    /// See [`Args::broker_id`].
    pub broker_id: Option<String>,
    /// See [`Args::retention`] (e.g. `30d`).
    pub retention: Option<String>,
    /// See [`Args::migration_lock_timeout`].
    pub migration_lock_timeout: Option<String>,
    /// See [`Args::rate_per_sec`].
    pub rate_per_sec: Option<u32>,
    /// See [`Args::rate_burst`].
    pub rate_burst: Option<u32>,
    /// See [`Args::max_batch`].
    pub max_batch: Option<usize>,
    /// See [`Args::writers`].
    pub writers: Option<usize>,
    /// See [`Args::allow_mesh_create`].
    pub allow_mesh_create: Option<bool>,
    /// See [`Args::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`Args::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Args::tls_key`].
    pub tls_key: Option<PathBuf>,
}

/// Why the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid YAML for these settings.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A duration could not be parsed.
    #[error("{field}: {value:?} is not a duration (examples: 30d, 12h, 90s)")]
    Duration {
        /// Which setting.
        field: &'static str,
        /// The text.
        value: String,
    },
    /// No data directory could be found for the default SQLite file.
    #[error(
        "cannot find a data directory for the default database (set HOME, or pass --database-url)"
    )]
    NoDataDir,
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

fn parse_duration(field: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|_| ConfigError::Duration {
        field,
        value: value.to_owned(),
    })
}

/// Reads and parses a YAML config file.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The default database: `<data dir>/claudemesh/broker.db`, creating the
/// directory.
pub fn default_database_url() -> Result<String, ConfigError> {
    use etcetera::BaseStrategy as _;
    let base = etcetera::choose_base_strategy().map_err(|_| ConfigError::NoDataDir)?;
    let dir = base.data_dir().join("claudemesh");
    std::fs::create_dir_all(&dir).map_err(|source| ConfigError::DataDir {
        path: dir.clone(),
        source,
    })?;
    Ok(sqlite_url(&dir.join("broker.db")))
}

impl Args {
    /// Merges flags/environment over the file over defaults.
    pub fn resolve(self) -> Result<BrokerConfig, ConfigError> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let database_url = match self.database_url.or(file.database_url) {
            Some(u) => u,
            None => default_database_url()?,
        };
        let mut c = BrokerConfig::defaults(database_url);
        if let Some(v) = self.listen.or(file.listen) {
            c.listen = v;
        }
        if let Some(v) = self.broker_id.or(file.broker_id) {
            if v.is_empty() || v.len() > claudemesh_proto::limits::MAX_LABEL_LEN {
                return Err(ConfigError::Invalid(
                    "broker_id must be 1-256 characters".into(),
                ));
            }
            c.broker_id = v;
        }
        match (self.retention, file.retention) {
            (Some(d), _) => c.retention = d.into(),
            (None, Some(s)) => c.retention = parse_duration("retention", &s)?,
            _ => {}
        }
        match (self.migration_lock_timeout, file.migration_lock_timeout) {
            (Some(d), _) => c.migration_lock_timeout = d.into(),
            (None, Some(s)) => {
                c.migration_lock_timeout = parse_duration("migration_lock_timeout", &s)?
            }
            _ => {}
        }
        if let Some(v) = self.rate_per_sec.or(file.rate_per_sec) {
            c.rate_per_sec = v.clamp(1, claudemesh_proto::limits::RATE_PER_SEC);
        }
        if let Some(v) = self.rate_burst.or(file.rate_burst) {
            c.rate_burst = v.clamp(1, claudemesh_proto::limits::RATE_BURST);
        }
        if let Some(v) = self.max_batch.or(file.max_batch) {
            c.max_batch = v.clamp(1, 8192);
        }
        if let Some(v) = self.writers.or(file.writers) {
            c.writers = Some(v.clamp(1, 16));
        }
        if let Some(v) = self.allow_mesh_create.or(file.allow_mesh_create) {
            c.allow_mesh_create = v;
        }
        if let Some(v) = self.log_format.or(file.log_format) {
            c.log_format = v;
        }
        c.tls_cert = self.tls_cert.or(file.tls_cert);
        c.tls_key = self.tls_key.or(file.tls_key);
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key go together: give both (HTTPS and wss://) or neither (plain HTTP and ws://)".into(),
            ));
        }
        if c.retention < Duration::from_secs(60) {
            return Err(ConfigError::Invalid(
                "retention must be at least 1 minute".into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("claudemesh-broker").chain(list.iter().copied()))
            .unwrap()
    }

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:9999\nretention: 12h\ndatabase_url: sqlite:///tmp/x.db\nbroker_id: from-file\n",
        )
        .unwrap();
        let c = args(&[
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:8888",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.listen.port(), 8888);
        assert_eq!(c.retention, Duration::from_secs(12 * 3600));
        assert_eq!(c.database_url, "sqlite:///tmp/x.db");
        assert_eq!(c.broker_id, "from-file");
        assert_eq!(c.max_batch, 1024);
    }

    #[test]
    fn bad_yaml_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.yaml");
        std::fs::write(&file, "listen: [unclosed\n").unwrap();
        let err = args(&["--config", file.to_str().unwrap()])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("line"), "{err}");
        std::fs::write(&file, "lisen: 1\n").unwrap();
        let err = args(&["--config", file.to_str().unwrap()])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn tls_cert_and_key_come_together_from_flags_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.yaml");
        std::fs::write(
            &file,
            "database_url: 'sqlite::memory:'\ntls_cert: /etc/cm/fullchain.pem\ntls_key: /etc/cm/privkey.pem\n",
        )
        .unwrap();
        let c = args(&["--config", file.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(
            c.tls_cert.as_deref(),
            Some(Path::new("/etc/cm/fullchain.pem"))
        );
        assert_eq!(c.tls_key.as_deref(), Some(Path::new("/etc/cm/privkey.pem")));
        let c = args(&[
            "--config",
            file.to_str().unwrap(),
            "--tls-cert",
            "/other/cert.pem",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.tls_cert.as_deref(), Some(Path::new("/other/cert.pem")));
        let err = args(&[
            "--database-url",
            "sqlite::memory:",
            "--tls-cert",
            "/other/cert.pem",
        ])
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("tls_key"), "{err}");
        let c = args(&["--database-url", "sqlite::memory:"])
            .resolve()
            .unwrap();
        assert!(c.tls_cert.is_none() && c.tls_key.is_none());
    }

    #[test]
    fn bad_duration_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.yaml");
        std::fs::write(
            &file,
            "retention: forever\ndatabase_url: 'sqlite::memory:'\n",
        )
        .unwrap();
        let err = args(&["--config", file.to_str().unwrap()])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention"), "{err}");
    }
}
