//! The optional YAML configuration file: the same settings as the flags,
//! all optional, unknown keys refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ConfigError;
use super::policy::MeshCreatePolicy;
use super::settings::LogFormat;

/// The YAML configuration file: the same settings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Args::listen`](super::Args::listen).
    pub listen: Option<SocketAddr>,
    /// See [`Args::database_url`](super::Args::database_url).
    pub database_url: Option<String>,
    /// See [`Args::broker_id`](super::Args::broker_id).
    pub broker_id: Option<String>,
    /// See [`Args::retention`](super::Args::retention) (e.g. `30d`).
    pub retention: Option<String>,
    /// See [`Args::migration_lock_timeout`](super::Args::migration_lock_timeout).
    pub migration_lock_timeout: Option<String>,
    /// See [`Args::rate_per_sec`](super::Args::rate_per_sec).
    pub rate_per_sec: Option<u32>,
    /// See [`Args::rate_burst`](super::Args::rate_burst).
    pub rate_burst: Option<u32>,
    /// See [`Args::member_rate_per_sec`](super::Args::member_rate_per_sec).
    pub member_rate_per_sec: Option<u32>,
    /// See [`Args::member_rate_burst`](super::Args::member_rate_burst).
    pub member_rate_burst: Option<u32>,
    /// See [`Args::member_bytes_per_sec`](super::Args::member_bytes_per_sec).
    pub member_bytes_per_sec: Option<u32>,
    /// See [`Args::member_bytes_burst`](super::Args::member_bytes_burst).
    pub member_bytes_burst: Option<u32>,
    /// See [`Args::max_sessions_per_member`](super::Args::max_sessions_per_member).
    pub max_sessions_per_member: Option<usize>,
    /// See [`Args::max_pending_per_address`](super::Args::max_pending_per_address).
    pub max_pending_per_address: Option<usize>,
    /// See [`Args::max_pending`](super::Args::max_pending).
    pub max_pending: Option<usize>,
    /// See [`Args::trusted_proxies`](super::Args::trusted_proxies) (a list of addresses or CIDR networks).
    pub trusted_proxies: Option<Vec<String>>,
    /// See [`Args::write_timeout`](super::Args::write_timeout) (e.g. `20s`).
    pub write_timeout: Option<String>,
    /// See [`Args::log_entries_per_hour`](super::Args::log_entries_per_hour).
    pub log_entries_per_hour: Option<u32>,
    /// See [`Args::log_burst`](super::Args::log_burst).
    pub log_burst: Option<u32>,
    /// See [`Args::log_bytes_per_hour`](super::Args::log_bytes_per_hour).
    pub log_bytes_per_hour: Option<u32>,
    /// See [`Args::max_log_bytes`](super::Args::max_log_bytes).
    pub max_log_bytes: Option<usize>,
    /// See [`Args::max_batch`](super::Args::max_batch).
    pub max_batch: Option<usize>,
    /// See [`Args::writers`](super::Args::writers).
    pub writers: Option<usize>,
    /// See [`Args::allow_mesh_create`](super::Args::allow_mesh_create) (`local`, `anyone`, `nobody`).
    pub allow_mesh_create: Option<MeshCreatePolicy>,
    /// See [`Args::mesh_create_token_file`](super::Args::mesh_create_token_file).
    pub mesh_create_token_file: Option<PathBuf>,
    /// See [`Args::log_format`](super::Args::log_format).
    pub log_format: Option<LogFormat>,
    /// See [`Args::tls_cert`](super::Args::tls_cert).
    pub tls_cert: Option<PathBuf>,
    /// See [`Args::tls_key`](super::Args::tls_key).
    pub tls_key: Option<PathBuf>,
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
