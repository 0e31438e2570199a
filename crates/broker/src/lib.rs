//! claudemesh-broker: websocket + HTTP on one port. It checks handshakes,
//! keeps each mesh's membership log (verifying every entry it appends),
//! stores sealed messages durably before acknowledging them, delivers them
//! live or when the recipient comes back, and tracks presence. It never
//! holds a secret: only public keys, signed entries and ciphertext (TM1).
//!
//! # Layout
//!
//! - [`server`]: start and graceful shutdown.
//! - [`state`]: what every connection and task shares ([`state::BrokerState`]).
//! - [`config`]: the one configuration struct (flags, environment, file).
//! - [`http`]: `/ws`, `/healthz`, `/readyz`, `/metrics`, `/join`.
//! - [`tls`]: HTTPS and `wss://` on the same port (`--tls-cert`).
//! - [`admission`]: where a connection comes from; the cap on connections
//!   per address before their hello.
//! - [`connection`]: one websocket: reads frames, dispatches them (the one
//!   switch over frame kinds, generated from proto's list), writes answers;
//!   the `socket` writer task beside it.
//! - [`handler`]: one file per client frame kind, named by its wire name
//!   (`hello` is the handshake), each a `Handle` impl answering
//!   `Result<Reply, Refusal>`.
//! - [`outbox`]: a connection's outbound queue, bounded in bytes, with
//!   presence coalesced apart, and its kill switch.
//! - [`wire`]: broker frames as websocket text.
//! - [`hub`]: every loaded mesh, loaded on first use; the replication side.
//! - [`mesh`]: one mesh in memory; its changes notify the other replicas.
//! - [`mesh_log`]: the verified log, append limits and quotas, append errors.
//! - [`sessions`]: a session's handle, remote sessions, the registry.
//! - [`presence`]: members' last presence, remote sessions, pushes.
//! - [`grant_table`]: members' verified grant sets (TM7).
//! - [`route`]: who receives a message (as of send time, minus grants).
//! - [`fanout`]: topic, group and broadcast messages after they are stored.
//! - [`delivery`]: live pushes, drains and wake-ups of connected sessions.
//! - [`writer`]: the group-commit writer.
//! - [`replication`]: several brokers on one Postgres waking each other.
//! - [`state_saver`]: members' last presence, written by one worker.
//! - [`ratelimit`]: the token bucket behind every rate.
//! - [`metrics`]: metric names and the Prometheus exporter.
//! - [`store`]: the storage trait and its SQLite and Postgres backends.
//! - [`db_url`]: a database URL with its password redacted.

pub mod admission;
pub mod config;
pub mod connection;
pub mod db_url;
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
pub mod scheduled;
pub mod server;
pub mod sessions;
pub mod state;
pub mod state_saver;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod watermarks;
pub mod wire;
pub mod writer;

pub use claudemesh_proto::clock::now_ms;
