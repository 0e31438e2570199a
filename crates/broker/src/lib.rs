//! claudemesh-broker: websocket + HTTP on one port. It checks handshakes,
//! keeps each mesh's membership log (verifying every entry it appends),
//! stores sealed messages durably before acknowledging them, delivers them
//! live or when the recipient comes back, and tracks presence. It never
//! holds a secret: only public keys, signed entries and ciphertext (TM1).
//!
//! - [`config`]: the one configuration struct (flags, environment, file).
//! - [`server`]: start and graceful shutdown.
//! - [`http`]: `/ws`, `/healthz`, `/readyz`, `/metrics`, `/join`.
//! - [`tls`]: HTTPS and `wss://` on the same port (`--tls-cert`).
//! - [`admission`]: where a connection comes from; the cap on connections
//!   per address before their hello.
//! - [`conn`]: one websocket connection, handshake to close.
//! - [`outbox`]: a connection's outbound queue, bounded in bytes, with
//!   presence coalesced apart, and its kill switch.
//! - [`hub`]: each mesh in memory: verified log, sessions, live delivery,
//!   per-member rates and log quotas.
//! - [`state_saver`]: members' last presence, written by one worker.
//! - [`ratelimit`]: the token bucket behind every rate.
//! - [`writer`]: the group-commit writer.
//! - [`replication`]: several brokers on one Postgres waking each other.
//! - [`store`]: the storage trait and its SQLite and Postgres backends.

pub mod admission;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod fanout;
pub mod grant_table;
pub mod handler;
pub mod http;
pub mod hub;
pub mod mesh;
pub mod mesh_log;
pub mod metrics;
pub mod outbox;
pub mod presence;
pub mod ratelimit;
pub mod replication;
pub mod route;
pub mod server;
pub mod sessions;
pub mod state;
pub mod state_saver;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod wire;
pub mod writer;

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
