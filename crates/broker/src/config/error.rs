//! [`ConfigError`]: why the configuration could not be assembled, one
//! variant per thing the operator fixes differently.

use std::path::PathBuf;

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
