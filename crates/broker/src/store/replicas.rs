//! What several brokers sharing one database need from it, as a trait of
//! its own, [`ReplicaStore`], so the base [`super::Store`] names no backend:
//! the heartbeat of each broker instance, the presence of every session
//! connected anywhere, the wake-up channel between brokers, and the few reads
//! a replica makes when it is woken (new log entries, a member's grant set,
//! messages by seq). Only Postgres implements it (SQLite serves one broker);
//! [`crate::replication`] owns what these operations are for.

use async_trait::async_trait;
use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::envelope::Priority;
use claudemesh_crypto::log::{LogEntry, PeerType};
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::frames::{EncryptedBlob, Status};

use super::error::StoreError;

/// The store's side of replication. Times that decide whether a broker is
/// alive come from the database's clock, so replicas whose clocks disagree
/// still agree on who is dead.
#[async_trait]
pub trait ReplicaStore: std::fmt::Debug + Send + Sync + 'static {
    /// Registers (or re-registers) a broker instance.
    async fn register(&self, broker: &str) -> Result<(), StoreError>;

    /// Moves the instance's heartbeat; false when its row was gone (another
    /// replica took it for dead and removed its sessions).
    async fn heartbeat(&self, broker: &str) -> Result<bool, StoreError>;

    /// Removes brokers whose heartbeat is older than `stale_ms` and, if
    /// any went (or `sweep` is set), every session row without a live
    /// broker.
    async fn reap(&self, stale_ms: u64, sweep: bool) -> Result<Reaped, StoreError>;

    /// Other broker instances whose heartbeat is younger than `stale_ms`.
    async fn live_peers(&self, broker: &str, stale_ms: u64) -> Result<u64, StoreError>;

    /// Removes an instance and its sessions (clean shutdown); returns whose
    /// sessions went.
    async fn leave(&self, broker: &str) -> Result<Vec<(MeshId, PublicKey)>, StoreError>;

    /// Applies this broker's presence changes in one transaction (at most
    /// one change per session key: the caller collapses them).
    async fn write_presence(
        &self,
        broker: &str,
        writes: &[PresenceWrite],
    ) -> Result<(), StoreError>;

    /// Sessions of `mesh` connected to other live instances than `broker`
    /// (heartbeat younger than `stale_ms`), of `members` only if given.
    async fn online_sessions(
        &self,
        mesh: &MeshId,
        members: Option<&[PublicKey]>,
        broker: &str,
        stale_ms: u64,
    ) -> Result<Vec<OnlineSession>, StoreError>;

    /// The membership log's entries from `from_seq` on, in order (unverified:
    /// the caller verifies each against its roster before adopting it).
    async fn log_from(&self, mesh: &MeshId, from_seq: u64) -> Result<Vec<LogEntry>, StoreError>;

    /// The stored grant sets of `members` (unverified).
    async fn grants_of(
        &self,
        mesh: &MeshId,
        members: &[PublicKey],
    ) -> Result<Vec<(PublicKey, String)>, StoreError>;

    /// Direct messages among `seqs` still queued for one of `recipients`,
    /// by seq.
    async fn direct_rows(
        &self,
        mesh: &MeshId,
        seqs: &[u64],
        recipients: &[PublicKey],
    ) -> Result<Vec<DirectRow>, StoreError>;

    /// Fan-out messages of `mesh` among `seqs`, by seq.
    async fn fanout_rows(
        &self,
        mesh: &MeshId,
        seqs: &[u64],
    ) -> Result<Vec<FanoutMessage>, StoreError>;

    /// A listener for wake-ups from the other brokers, on a connection of
    /// its own.
    async fn listen(&self) -> Result<Box<dyn WakeListener>, StoreError>;

    /// A sender of wake-ups to the other brokers, outside any message
    /// transaction.
    fn notifier(&self) -> Box<dyn WakeSender>;
}

/// Hears the wake-ups other brokers send.
#[async_trait]
pub trait WakeListener: Send {
    /// The next wake-up's payload; `Ok(None)` when the connection was lost
    /// (whatever was said meanwhile is missed: the caller catches up from
    /// the tables).
    async fn try_recv(&mut self) -> Result<Option<String>, StoreError>;
}

/// Sends wake-ups to the other brokers. A wake-up is a hint about rows that
/// are already durable: one that is lost is made up for by a catch-up.
#[async_trait]
pub trait WakeSender: Send {
    /// Sends each payload as one wake-up.
    async fn send(&mut self, payloads: &[String]) -> Result<(), StoreError>;
}

/// One session connected to some broker instance, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineSession {
    /// The mesh.
    pub mesh: MeshId,
    /// The session key.
    pub session: PublicKey,
    /// Its member.
    pub member: PublicKey,
    /// The broker instance it is connected to.
    pub broker: String,
    /// That broker's connection id.
    pub conn_id: u64,
    /// The certificate it presented.
    pub cert: SessionCert,
    /// Status.
    pub status: Status,
    /// Declared peer type.
    pub peer_type: Option<PeerType>,
    /// Encrypted summary.
    pub summary: Option<EncryptedBlob>,
    /// When it connected (its broker's clock), unix ms.
    pub connected_at_ms: u64,
    /// When its row last changed, unix ms.
    pub updated_at_ms: u64,
}

/// A change to this broker's rows in `sessions_online`.
#[derive(Debug, Clone)]
pub enum PresenceWrite {
    /// A session connected (`fresh`: it replaces whatever row the session
    /// key had, on any broker) or changed its presence (only this broker's
    /// row of the same connection is updated).
    Up {
        /// The row.
        row: Box<OnlineSession>,
        /// A new connection rather than a change.
        fresh: bool,
    },
    /// A connection ended: its row goes, if it is still this connection's.
    Down(Box<SessionEnd>),
}

/// A connection that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// The mesh.
    pub mesh: MeshId,
    /// The session key.
    pub session: PublicKey,
    /// The connection.
    pub conn_id: u64,
}

/// What [`ReplicaStore::reap`] removed.
#[derive(Debug, Clone, Default)]
pub struct Reaped {
    /// Dead broker instances.
    pub brokers: Vec<String>,
    /// (mesh, member) of each session row that went with them.
    pub sessions: Vec<(MeshId, PublicKey)>,
}

/// A direct message waiting for a recipient, read by seq.
#[derive(Debug, Clone)]
pub struct DirectRow {
    /// Broker sequence number.
    pub seq: u64,
    /// The recipient key (member or session) whose delivery row it is.
    pub recipient: PublicKey,
    /// Priority.
    pub priority: Priority,
    /// The envelope JSON.
    pub envelope_json: String,
    /// When it was stored, unix ms.
    pub queued_at_ms: u64,
    /// The sender's deadline, unix ms.
    pub deadline_ms: Option<u64>,
}

/// A fan-out message, read by seq.
#[derive(Debug, Clone)]
pub struct FanoutMessage {
    /// Broker sequence number.
    pub seq: u64,
    /// The target as on the wire.
    pub target: String,
    /// The log length it was accepted at.
    pub at_len: u64,
    /// Its sender's member key.
    pub sender: PublicKey,
    /// Priority.
    pub priority: Priority,
    /// The envelope JSON.
    pub envelope_json: String,
    /// When it was stored, unix ms.
    pub queued_at_ms: u64,
    /// Its number within its target.
    pub tseq: Option<u64>,
    /// The sender's deadline, unix ms.
    pub deadline_ms: Option<u64>,
}
