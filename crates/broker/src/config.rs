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
/// Sessions one member may hold on one broker by default.
pub const DEFAULT_MAX_SESSIONS_PER_MEMBER: usize =
    claudemesh_proto::limits::MAX_SESSIONS_PER_MEMBER as usize;
/// Connections one address may hold before their hello, by default.
pub const DEFAULT_MAX_PENDING_PER_ADDRESS: usize = 64;
/// Bytes per second one member may send, by default (1 MiB).
pub const DEFAULT_MEMBER_BYTES_PER_SEC: u32 = claudemesh_proto::limits::MEMBER_BYTES_PER_SEC;
/// Bytes one member may send at once, by default (16 MiB).
pub const DEFAULT_MEMBER_BYTES_BURST: u32 = 16 * 1024 * 1024;
/// Connections from everyone before their hello, by default.
pub const DEFAULT_MAX_PENDING: usize = 4096;
/// Default limit on one socket write.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Default sustained log entries per member and hour.
pub const DEFAULT_LOG_ENTRIES_PER_HOUR: u32 = 600;
/// Default burst of log entries per member (at least a full frame's 256).
pub const DEFAULT_LOG_BURST: u32 = 300;
/// Default bytes of log entries per member and hour.
pub const DEFAULT_LOG_BYTES_PER_HOUR: u32 = 4 * 1024 * 1024;
/// Default largest membership log per mesh (JSON bytes).
pub const DEFAULT_MAX_LOG_BYTES: usize = 64 * 1024 * 1024;

/// Who may register a new mesh (`mesh_create`). Whoever holds the
/// operator's mesh-creation token may, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeshCreatePolicy {
    /// Only connections from this machine (a loopback peer address, with no
    /// `Forwarded`/`X-Forwarded-For`/`X-Real-IP` header: a reverse proxy on
    /// the same host does not make its clients local).
    #[default]
    Local,
    /// Anyone who can reach the broker.
    Anyone,
    /// No one (only token holders).
    Nobody,
}

impl std::str::FromStr for MeshCreatePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" | "loopback" => Ok(MeshCreatePolicy::Local),
            // `true`/`false` are what this setting took before it had three values.
            "anyone" | "true" | "yes" => Ok(MeshCreatePolicy::Anyone),
            "nobody" | "no" | "false" | "none" => Ok(MeshCreatePolicy::Nobody),
            other => Err(format!(
                "{other:?} is not a mesh-creation policy (local, anyone or nobody)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for MeshCreatePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML may say `true`/`false` (the old form) or a word.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(MeshCreatePolicy::Anyone),
            Raw::Bool(false) => Ok(MeshCreatePolicy::Nobody),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The operator's mesh-creation token, kept only as its SHA-256 so it is
/// compared in constant time and can never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MeshCreateToken([u8; 32]);

/// Shortest mesh-creation token accepted (it is a password for the broker).
pub const MIN_MESH_CREATE_TOKEN_LEN: usize = 16;

impl MeshCreateToken {
    /// The token for `secret` (at least [`MIN_MESH_CREATE_TOKEN_LEN`] characters).
    pub fn new(secret: &str) -> Result<Self, ConfigError> {
        let secret = secret.trim();
        if secret.chars().count() < MIN_MESH_CREATE_TOKEN_LEN {
            return Err(ConfigError::Invalid(format!(
                "the mesh-creation token must be at least {MIN_MESH_CREATE_TOKEN_LEN} characters"
            )));
        }
        Ok(MeshCreateToken(Self::digest(secret)))
    }

    fn digest(secret: &str) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(secret.trim().as_bytes()).into()
    }

    /// Whether `offered` is the token (constant time).
    pub fn matches(&self, offered: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(Self::digest(offered).ct_eq(&self.0))
    }
}

impl std::fmt::Debug for MeshCreateToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshCreateToken(<redacted>)")
    }
}

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
    /// Frames per second per member, all its sessions together (sustained).
    pub member_rate_per_sec: u32,
    /// Frames per member above its sustained rate.
    pub member_rate_burst: u32,
    /// Bytes of frames per second per member, all its sessions together.
    pub member_bytes_per_sec: u32,
    /// Bytes of frames per member at once (at least one frame).
    pub member_bytes_burst: u32,
    /// Most sessions one member may have connected to this broker.
    pub max_sessions_per_member: usize,
    /// Most connections from one IP address (an IPv6 /64) that have not
    /// said hello yet.
    pub max_pending_per_address: usize,
    /// Most connections from everyone together that have not said hello.
    pub max_pending: usize,
    /// Reverse proxies believed when they name their client
    /// (`X-Forwarded-For`, `X-Real-IP`, `Forwarded`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A socket write that takes longer ends the connection (a peer that
    /// stopped reading).
    pub write_timeout: Duration,
    /// Membership-log entries one member may append per hour (sustained).
    pub log_entries_per_hour: u32,
    /// Entries one member may append at once above that rate.
    pub log_burst: u32,
    /// Bytes of membership-log entries one member may append per hour (and
    /// at once).
    pub log_bytes_per_hour: u32,
    /// Largest membership log of one mesh, in bytes of JSON; above it only
    /// entries that remove someone or rotate keys are taken.
    pub max_log_bytes: usize,
    /// Most messages and acks per group commit.
    pub max_batch: usize,
    /// Group-commit writers (connections committing in parallel); `None`:
    /// 1 on SQLite (one writer at a time anyway), 4 on Postgres.
    pub writers: Option<usize>,
    /// Who may register a new mesh (`mesh_create`).
    pub allow_mesh_create: MeshCreatePolicy,
    /// Holders of this token may register meshes from anywhere.
    pub mesh_create_token: Option<MeshCreateToken>,
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
            member_rate_per_sec: claudemesh_proto::limits::RATE_PER_SEC,
            member_rate_burst: claudemesh_proto::limits::RATE_BURST,
            member_bytes_per_sec: DEFAULT_MEMBER_BYTES_PER_SEC,
            member_bytes_burst: DEFAULT_MEMBER_BYTES_BURST,
            max_sessions_per_member: DEFAULT_MAX_SESSIONS_PER_MEMBER,
            max_pending_per_address: DEFAULT_MAX_PENDING_PER_ADDRESS,
            max_pending: DEFAULT_MAX_PENDING,
            trusted_proxies: crate::admission::default_trusted_proxies(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            log_entries_per_hour: DEFAULT_LOG_ENTRIES_PER_HOUR,
            log_burst: DEFAULT_LOG_BURST,
            log_bytes_per_hour: DEFAULT_LOG_BYTES_PER_HOUR,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            max_batch: 1024,
            writers: None,
            allow_mesh_create: MeshCreatePolicy::Local,
            mesh_create_token: None,
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
    /// Frames per second per member, all its sessions together [default: 500]
    #[arg(long, env = "CLAUDEMESH_BROKER_MEMBER_RATE_PER_SEC")]
    pub member_rate_per_sec: Option<u32>,
    /// Burst of frames per member [default: 1000]
    #[arg(long, env = "CLAUDEMESH_BROKER_MEMBER_RATE_BURST")]
    pub member_rate_burst: Option<u32>,
    /// Bytes per second per member, all its sessions together [default: 1048576 (1 MiB)]
    #[arg(long, env = "CLAUDEMESH_BROKER_MEMBER_BYTES_PER_SEC")]
    pub member_bytes_per_sec: Option<u32>,
    /// Bytes per member at once [default: 16777216 (16 MiB)]
    #[arg(long, env = "CLAUDEMESH_BROKER_MEMBER_BYTES_BURST")]
    pub member_bytes_burst: Option<u32>,
    /// Most sessions one member may have connected here [default: 32]
    #[arg(long, env = "CLAUDEMESH_BROKER_MAX_SESSIONS_PER_MEMBER")]
    pub max_sessions_per_member: Option<usize>,
    /// Most connections from one IP address before their hello [default: 64]
    #[arg(long, env = "CLAUDEMESH_BROKER_MAX_PENDING_PER_ADDRESS")]
    pub max_pending_per_address: Option<usize>,
    /// Most connections from everyone together before their hello [default: 4096]
    #[arg(long, env = "CLAUDEMESH_BROKER_MAX_PENDING")]
    pub max_pending: Option<usize>,
    /// Reverse proxies whose X-Forwarded-For / X-Real-IP / Forwarded header
    /// names the client: comma-separated addresses or CIDR networks
    /// [default: 127.0.0.0/8,::1/128]
    #[arg(
        long,
        env = "CLAUDEMESH_BROKER_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// A socket write taking longer ends the connection, e.g. 20s [default: 20s]
    #[arg(long, env = "CLAUDEMESH_BROKER_WRITE_TIMEOUT")]
    pub write_timeout: Option<humantime::Duration>,
    /// Membership-log entries one member may append per hour [default: 600]
    #[arg(long, env = "CLAUDEMESH_BROKER_LOG_ENTRIES_PER_HOUR")]
    pub log_entries_per_hour: Option<u32>,
    /// Log entries one member may append at once, at least 256 [default: 300]
    #[arg(long, env = "CLAUDEMESH_BROKER_LOG_BURST")]
    pub log_burst: Option<u32>,
    /// Bytes of log entries one member may append per hour [default: 4194304 (4 MiB)]
    #[arg(long, env = "CLAUDEMESH_BROKER_LOG_BYTES_PER_HOUR")]
    pub log_bytes_per_hour: Option<u32>,
    /// Largest membership log of one mesh in bytes; above it only removals
    /// and key rotations are taken [default: 67108864 (64 MiB)]
    #[arg(long, env = "CLAUDEMESH_BROKER_MAX_LOG_BYTES")]
    pub max_log_bytes: Option<usize>,
    /// Most messages per group commit [default: 1024]
    #[arg(long, env = "CLAUDEMESH_BROKER_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Group-commit writers in parallel [default: 1 on SQLite, 4 on Postgres]
    #[arg(long, env = "CLAUDEMESH_BROKER_WRITERS")]
    pub writers: Option<usize>,
    /// Who may create meshes here: local (connections from this machine),
    /// anyone, or nobody; holders of the mesh-creation token always may
    /// [default: local]
    #[arg(
        long,
        env = "CLAUDEMESH_BROKER_ALLOW_MESH_CREATE",
        value_name = "local|anyone|nobody"
    )]
    pub allow_mesh_create: Option<MeshCreatePolicy>,
    /// The mesh-creation token (at least 16 characters): who presents it
    /// (`claudemesh mesh create --create-token`) may create a mesh from
    /// anywhere. Prefer the environment variable or --mesh-create-token-file:
    /// a flag's value is visible to other users in the process list
    #[arg(
        long,
        env = "CLAUDEMESH_BROKER_MESH_CREATE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub mesh_create_token: Option<String>,
    /// File holding the mesh-creation token (see --mesh-create-token)
    #[arg(
        long,
        env = "CLAUDEMESH_BROKER_MESH_CREATE_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub mesh_create_token_file: Option<PathBuf>,
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
    /// See [`Args::member_rate_per_sec`].
    pub member_rate_per_sec: Option<u32>,
    /// See [`Args::member_rate_burst`].
    pub member_rate_burst: Option<u32>,
    /// See [`Args::member_bytes_per_sec`].
    pub member_bytes_per_sec: Option<u32>,
    /// See [`Args::member_bytes_burst`].
    pub member_bytes_burst: Option<u32>,
    /// See [`Args::max_sessions_per_member`].
    pub max_sessions_per_member: Option<usize>,
    /// See [`Args::max_pending_per_address`].
    pub max_pending_per_address: Option<usize>,
    /// See [`Args::max_pending`].
    pub max_pending: Option<usize>,
    /// See [`Args::trusted_proxies`] (a list of addresses or CIDR networks).
    pub trusted_proxies: Option<Vec<String>>,
    /// See [`Args::write_timeout`] (e.g. `20s`).
    pub write_timeout: Option<String>,
    /// See [`Args::log_entries_per_hour`].
    pub log_entries_per_hour: Option<u32>,
    /// See [`Args::log_burst`].
    pub log_burst: Option<u32>,
    /// See [`Args::log_bytes_per_hour`].
    pub log_bytes_per_hour: Option<u32>,
    /// See [`Args::max_log_bytes`].
    pub max_log_bytes: Option<usize>,
    /// See [`Args::max_batch`].
    pub max_batch: Option<usize>,
    /// See [`Args::writers`].
    pub writers: Option<usize>,
    /// See [`Args::allow_mesh_create`] (`local`, `anyone`, `nobody`).
    pub allow_mesh_create: Option<MeshCreatePolicy>,
    /// See [`Args::mesh_create_token_file`].
    pub mesh_create_token_file: Option<PathBuf>,
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

/// An address (`10.0.0.1`, `::1`) or a network (`172.16.0.0/12`).
fn parse_network(s: &str) -> Result<ipnet::IpNet, ConfigError> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            ConfigError::Invalid(format!(
                "trusted_proxies: {s:?} is not an address or a CIDR network (e.g. 10.0.0.0/8)"
            ))
        })
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
        if let Some(v) = self.member_rate_per_sec.or(file.member_rate_per_sec) {
            c.member_rate_per_sec = v.max(1);
        }
        if let Some(v) = self.member_rate_burst.or(file.member_rate_burst) {
            c.member_rate_burst = v.max(1);
        }
        if let Some(v) = self.member_bytes_per_sec.or(file.member_bytes_per_sec) {
            c.member_bytes_per_sec = v.max(claudemesh_proto::limits::MAX_FRAME_BYTES as u32);
        }
        if let Some(v) = self.member_bytes_burst.or(file.member_bytes_burst) {
            // One frame always fits.
            c.member_bytes_burst = v.max(claudemesh_proto::limits::MAX_FRAME_BYTES as u32);
        }
        if let Some(v) = self
            .max_sessions_per_member
            .or(file.max_sessions_per_member)
        {
            c.max_sessions_per_member = v.max(1);
        }
        if let Some(v) = self
            .max_pending_per_address
            .or(file.max_pending_per_address)
        {
            c.max_pending_per_address = v.max(1);
        }
        if let Some(v) = self.max_pending.or(file.max_pending) {
            c.max_pending = v.max(1);
        }
        if let Some(list) = self.trusted_proxies.or(file.trusted_proxies) {
            c.trusted_proxies = list
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(parse_network)
                .collect::<Result<_, _>>()?;
        }
        match (self.write_timeout, file.write_timeout) {
            (Some(d), _) => c.write_timeout = d.into(),
            (None, Some(s)) => c.write_timeout = parse_duration("write_timeout", &s)?,
            _ => {}
        }
        if let Some(v) = self.log_entries_per_hour.or(file.log_entries_per_hour) {
            c.log_entries_per_hour = v.max(1);
        }
        if let Some(v) = self.log_burst.or(file.log_burst) {
            // No batch (at most 256 entries) may cost less than it holds.
            c.log_burst = v.max(claudemesh_proto::limits::MAX_LOG_ENTRIES_PER_FRAME as u32);
        }
        if let Some(v) = self.log_bytes_per_hour.or(file.log_bytes_per_hour) {
            // One entry (at most a frame) always fits the bucket.
            c.log_bytes_per_hour = v.max(claudemesh_proto::limits::MAX_FRAME_BYTES as u32);
        }
        if let Some(v) = self.max_log_bytes.or(file.max_log_bytes) {
            c.max_log_bytes = v.max(1024 * 1024);
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
        // The token itself (flag or environment) wins over a file; an empty
        // one is none (a compose file's unset variable).
        c.mesh_create_token = match (
            self.mesh_create_token.filter(|t| !t.trim().is_empty()),
            self.mesh_create_token_file.or(file.mesh_create_token_file),
        ) {
            (Some(secret), _) => Some(MeshCreateToken::new(&secret)?),
            (None, Some(path)) => {
                let secret = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::Read { path, source })?;
                Some(MeshCreateToken::new(&secret)?)
            }
            (None, None) => None,
        };
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
        if c.write_timeout < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "write_timeout must be at least 1 second".into(),
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
    fn mesh_creation_policy_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let c = args(&["--database-url", "sqlite::memory:"])
            .resolve()
            .unwrap();
        assert_eq!(c.allow_mesh_create, MeshCreatePolicy::Local);
        // The old boolean form still reads, as the two ends of the new one.
        for (given, want) in [
            ("true", MeshCreatePolicy::Anyone),
            ("false", MeshCreatePolicy::Nobody),
            ("anyone", MeshCreatePolicy::Anyone),
        ] {
            let c = args(&[
                "--database-url",
                "sqlite::memory:",
                "--allow-mesh-create",
                given,
            ])
            .resolve()
            .unwrap();
            assert_eq!(c.allow_mesh_create, want);
        }
        let file = dir.path().join("broker.yaml");
        std::fs::write(
            &file,
            "database_url: 'sqlite::memory:'\nallow_mesh_create: false\n",
        )
        .unwrap();
        let c = args(&["--config", file.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(c.allow_mesh_create, MeshCreatePolicy::Nobody);
        // A token file; too short a token is refused; it never prints.
        let token = dir.path().join("token");
        std::fs::write(&token, "sixteen-characters-or-more\n").unwrap();
        let with_file = |path: &Path| {
            args(&[
                "--database-url",
                "sqlite::memory:",
                "--mesh-create-token-file",
                path.to_str().unwrap(),
            ])
            .resolve()
        };
        let t = with_file(&token).unwrap().mesh_create_token.unwrap();
        assert!(t.matches("sixteen-characters-or-more"));
        assert!(!t.matches("sixteen-characters-or-less"));
        assert!(!format!("{t:?}").contains("sixteen"));
        std::fs::write(&token, "short").unwrap();
        let err = with_file(&token).unwrap_err().to_string();
        assert!(err.contains("16"), "{err}");
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
