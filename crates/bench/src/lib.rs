//! claudemesh-bench: the load generator behind `docs/benchmarks.md`.
//!
//! It starts (or targets) a broker on loopback, makes real peers through the
//! client SDK, runs one bounded scenario and reports throughput, latency
//! percentiles, the broker's RSS and where the CPU went.
//!
//! # Layout
//!
//! - [`args`]: the command line.
//! - [`target`]: the broker under test (embedded on SQLite or a throwaway
//!   Postgres database, or an external one on loopback).
//! - [`setup`]: a mesh with an owner and members, each in its own home.
//! - [`crowd`]: a mesh with many members added through the log (fan-out).
//! - [`handshake`], [`dm`], [`fanout`], [`topic`], [`peer_list`]: the
//!   scenarios.
//! - [`light`]: the few frame fields the wire-level clients read.
//! - [`stats`], [`sys`], [`report`]: percentiles, `/proc` and `/metrics`
//!   readings, and the printed result.
//! - `decode_cost` (test only): what decoding one `send` frame costs.
//! - `main.rs`: the binary, which parses [`args`] and runs one scenario.

pub mod args;
pub mod crowd;
#[cfg(test)]
mod decode_cost;
pub mod dm;
pub mod fanout;
pub mod gateway;
pub mod handshake;
pub mod light;
pub mod peer_list;
pub mod report;
pub mod setup;
pub mod stats;
pub mod sys;
pub mod target;
pub mod topic;

use std::fmt;

/// Why a run failed: one line for the user.
#[derive(Debug)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl BenchError {
    /// An error with `context` in front of `e`.
    pub fn ctx(context: &str, e: impl fmt::Display) -> Self {
        BenchError(format!("{context}: {e}"))
    }
}

impl From<claudemesh_client::ClientError> for BenchError {
    fn from(e: claudemesh_client::ClientError) -> Self {
        BenchError(e.to_string())
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(e.to_string())
    }
}

/// Results and errors of this crate.
pub type Result<T> = std::result::Result<T, BenchError>;
