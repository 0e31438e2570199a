//! [`BrokerConfig`], the one source of truth for the broker's settings,
//! with every default: what `claudemesh-broker` with no arguments runs with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::policy::{MeshCreatePolicy, MeshCreateToken};

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

    pub(super) fn defaults(database_url: String) -> Self {
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
