//! Command-line flags ([`Args`]), each also read from its
//! `CLAUDEMESH_BROKER_*` variable, and [`Args::resolve`], which lays flags
//! over the file over the defaults and checks what results.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::error::ConfigError;
use super::file::{FileConfig, read_file};
use super::policy::{MeshCreatePolicy, MeshCreateToken};
use super::settings::{BrokerConfig, LogFormat, default_database_url};

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
