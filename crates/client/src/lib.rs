//! claudemesh-client: the SDK every claudemesh program uses (the CLI, the
//! MCP server, the bridge, the load generator).
//!
//! # Layout
//!
//! Features, by the words users know (each calls down into the session and
//! the mesh state, never the other way):
//! - [`messages`]: direct messages, and posts to a topic, group or `*`.
//! - [`topics`]: create, join, add, leave, list, read, history.
//! - [`groups`]: join, leave, list.
//! - [`moderation`]: kick, ban, unban, leave the mesh, a new mesh key.
//! - [`invites`]: share, revoke, join with one.
//! - [`membership`]: create a mesh; settle in after a create or join.
//! - [`grants`]: who may reach this member (TM7): a change by peer name,
//!   signed and pushed to the broker.
//! - [`peers`]: the peer list, resolving a recipient, this session's
//!   presence.
//! - [`ttl`]: message expiry: reading a time to live, and what a resend
//!   of an outbox message carries of it.
//! - [`schedule`]: messages the broker holds to deliver later: listing and
//!   cancelling them, and the rules of what a send carries of its time.
//! - [`memory`]: team memory: notes sealed to the mesh, stored by the
//!   broker unread, mirrored and searched (FTS5) on each device, and the
//!   coordination key ring that lets later joiners read older notes.
//! - [`receipts`]: checking the signed receipts and watermarks a sent
//!   message's recipients returned (what `message status` proves).
//!
//! Each request a feature makes is a [`MeshClient`] method in its module.
//!
//! Below them:
//! - [`client`]: [`MeshClient`], the public facade of a live session (the
//!   features add their requests to it).
//! - [`session`]: connect, the hello handshake (once), requests, outbox,
//!   inbound, log sync and appends, the reconnect supervisor.
//! - [`mesh`]: the verified view of a mesh (roster, names, sealing,
//!   opening) and the pure rules beside it (key rotation, removals,
//!   mentions, signed entry chains; `mesh::pins`: verified peer keys and
//!   the check before a direct send, TM8).
//! - [`grant_set`]: the signed grant set, its file, and the re-check on
//!   receipt the session applies (TM7).
//! - [`lookalike`]: comparing names as a reader sees them (TM8).
//! - [`local`]: the local SQLite state: verified log, inbox, outbox.
//! - [`home`]: the home directory, its key files (0600 in 0700), config.
//! - [`backup`]: what a `.cmb` backup holds, and restoring a home from one.
//! - [`wire`]: one websocket to a broker, below any mesh logic; [`tls`]:
//!   what a `wss://` connection trusts.
//! - [`error`]: [`ClientError`], one variant per thing a caller can act on;
//!   [`error_kind`]: the kind of each (the CLI's exit codes, the gateway's
//!   problem types) and its hint.

pub mod backup;
pub mod client;
mod coord_mirror;
pub mod error;
pub mod error_kind;
pub mod grant_set;
pub mod grants;
pub mod groups;
pub mod home;
pub mod invites;
pub mod lease_path;
pub mod leases;
pub mod local;
pub mod lookalike;
pub mod membership;
pub mod memory;
pub mod mesh;
pub mod messages;
pub mod moderation;
pub mod naming;
pub mod peers;
pub mod receipts;
pub mod schedule;
pub mod session;
pub mod state;
pub mod tasks;
pub mod tls;
pub mod topics;
pub mod ttl;
pub mod wire;

pub use claudemesh_crypto::receipt::{ReceiptState, Via};
pub use client::{ConnectOptions, Event, MeshClient, SendOptions, SendOutcome, SessionChoice};
pub use error::ClientError;
pub use home::{Home, MeshConfig};
