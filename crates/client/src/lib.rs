//! claudemesh-client: the SDK every claudemesh program uses (the CLI, the
//! MCP server, the bridge, the load generator).
//!
//! - [`backup`]: what a `.cmb` backup holds, and restoring a home from one.
//! - [`home`]: the home directory, its key files (0600 in 0700) and config.
//! - [`local`]: the local SQLite state: verified log, inbox, outbox.
//! - [`lookalike`]: comparing names as a reader sees them (TM8): NFKC,
//!   case folding, invisible characters, UTS #39 confusable skeletons.
//! - [`mesh`]: the verified view of a mesh: roster, names, sealing, opening.
//! - [`wire`]: one websocket to a broker, below any mesh logic.
//! - [`tls`]: what a `wss://` connection trusts (platform roots, a private
//!   CA), and what a failed handshake means.
//! - [`client`]: [`MeshClient`], a live session: handshake, send, receive,
//!   acks, reconnect.
//! - [`ops`]: create, share, join, revoke.
//! - [`grants`]: who may reach this member (TM7): the signed grant set,
//!   its file, and the re-check on receipt.
//! - [`spaces`]: topics, groups, broadcast posts and mentions; kick, ban,
//!   unban and leave; which keys must rotate before a fan-out send.

pub mod backup;
pub mod client;
pub mod error;
pub mod grants;
pub mod home;
pub mod local;
pub mod lookalike;
pub mod mesh;
pub mod ops;
pub mod pins;
pub mod spaces;
pub mod tls;
pub mod wire;

pub use client::{ConnectOptions, Event, MeshClient, SendOutcome, SessionChoice};
pub use error::ClientError;
pub use home::{Home, MeshConfig};
