//! The broker's configuration: one struct, [`BrokerConfig`], with defaults,
//! filled from command-line flags, then `CLAUDEMESH_BROKER_*` environment
//! variables, then an optional YAML file, in that order of precedence.
//! `claudemesh-broker` with no arguments listens on 127.0.0.1:7900 and keeps
//! its data in an SQLite file in the platform data directory.
//!
//! # Layout
//!
//! - `settings.rs`: [`BrokerConfig`] and every default.
//! - `flags.rs`: the flags and environment ([`Args`]), and
//!   [`Args::resolve`], which merges them over the file and checks them.
//! - `file.rs`: the YAML file ([`FileConfig`]).
//! - `policy.rs`: who may create a mesh ([`MeshCreatePolicy`],
//!   [`MeshCreateToken`]).
//! - `error.rs`: [`ConfigError`].

mod error;
mod file;
mod flags;
mod policy;
mod settings;
#[cfg(test)]
mod tests;

pub use error::ConfigError;
pub use file::{FileConfig, read_file};
pub use flags::Args;
pub use policy::{MIN_MESH_CREATE_TOKEN_LEN, MeshCreatePolicy, MeshCreateToken};
pub use settings::{
    BrokerConfig, DEFAULT_LISTEN, DEFAULT_LOG_BURST, DEFAULT_LOG_BYTES_PER_HOUR,
    DEFAULT_LOG_ENTRIES_PER_HOUR, DEFAULT_MAX_LOG_BYTES, DEFAULT_MAX_PENDING,
    DEFAULT_MAX_PENDING_PER_ADDRESS, DEFAULT_MAX_SESSIONS_PER_MEMBER, DEFAULT_MEMBER_BYTES_BURST,
    DEFAULT_MEMBER_BYTES_PER_SEC, DEFAULT_RETENTION, DEFAULT_WRITE_TIMEOUT, LogFormat,
    default_database_url, sqlite_url,
};
