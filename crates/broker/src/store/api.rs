//! The [`Store`] trait: everything the broker asks of its durable state,
//! one transaction per method. It is shaped by the broker's hot path:
//! messages and acks arrive in batches from the group-commit writer
//! ([`Store::write_batch`]), one transaction per batch; everything else is
//! rare. What only several brokers sharing a database need is the separate
//! [`ReplicaStore`], reached through [`Store::replicas`].

use std::sync::Arc;

use async_trait::async_trait;
use claudemesh_crypto::coord::{CoordId, CoordKind};
use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::LogEntry;
use claudemesh_crypto::{Hash32, MeshId, PublicKey};

use super::error::StoreError;
use super::records::{
    AckOp, AppendExtras, AppendOutcome, CancelOutcome, CoordRow, FanoutRow, ForgetOutcome,
    HeldMessage, HoldOutcome, InsertOutcome, LeaseOutcome, LeaseTakeRequest, MemberState,
    MessageStatus, NewCoordObject, NewMessage, PageLimit, PendingMessage, PutOutcome, ReceiptRow,
    RetentionOutcome, SessionRecord, StateOutcome, TableDump, TaskActOutcome, TaskActRequest,
    WatermarkRow,
};
use super::replicas::ReplicaStore;

/// The broker's storage. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// What several brokers on this database share (Postgres only): `None`
    /// means this broker is the only one and replication stays off.
    fn replicas(&self) -> Option<Arc<dyn ReplicaStore>> {
        None
    }

    /// Whether the database answers and every migration this build knows is
    /// applied (readiness).
    async fn ready(&self) -> Result<(), StoreError>;

    /// Registers a mesh by its verified genesis entry. Returns false when it
    /// already exists (sending the same genesis twice is harmless).
    async fn create_mesh(
        &self,
        genesis: &LogEntry,
        mesh_id: MeshId,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// The whole membership log of a mesh, or `None` if there is no such mesh.
    async fn load_log(&self, mesh: &MeshId) -> Result<Option<Vec<LogEntry>>, StoreError>;

    /// Appends verified entries if the log still has `expected_len` entries,
    /// with the invite rows that go with them, atomically.
    async fn append_log(
        &self,
        mesh: &MeshId,
        expected_len: u64,
        entries: &[(LogEntry, Hash32)],
        extras: &AppendExtras,
    ) -> Result<AppendOutcome, StoreError>;

    /// The mesh and encrypted welcome bundle of an invite key.
    async fn invite_bundle(
        &self,
        invite_key: &PublicKey,
    ) -> Result<Option<(MeshId, Vec<u8>)>, StoreError>;

    /// Stores new messages (skipping duplicates) and applies acks, in one
    /// transaction. Returns one outcome per message, in order.
    async fn write_batch(
        &self,
        messages: &[NewMessage],
        acks: &[AckOp],
    ) -> Result<Vec<InsertOutcome>, StoreError>;

    /// Queued messages for a member and/or one of its sessions, with seq
    /// above `after_seq`, whose priority is at most `max_priority`
    /// (`Low` = all), oldest first.
    async fn pending(
        &self,
        mesh: &MeshId,
        recipients: &[PublicKey],
        after_seq: u64,
        max_priority: Priority,
        limit: PageLimit,
    ) -> Result<Vec<PendingMessage>, StoreError>;

    /// Fan-out messages for `member` across `targets`, oldest first, at
    /// most `limit`: for each `(target, min_at_len)`, messages of that
    /// target with seq above both `after_seq` and the member's cursor for
    /// it, accepted at a log length above `min_at_len`, not sent by
    /// `member`. Acked ones come back too (without envelope) so the caller
    /// can move the cursor. Every such message with a seq up to the last one
    /// returned is in the answer, so a full answer's last seq bounds what
    /// was looked at. One statement however many targets: a member others
    /// put in a thousand topics costs one query per drain page, not a
    /// thousand.
    async fn fanout_pages(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
        targets: &[(String, u64)],
        after_seq: u64,
        limit: PageLimit,
    ) -> Result<Vec<FanoutRow>, StoreError>;
    /// Moves a member's cursor for a target forward to `seq` (never back).
    async fn advance_fanout_cursor(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
        target: &str,
        seq: u64,
    ) -> Result<(), StoreError>;
    /// A target's stored fan-out messages below `before_seq`, newest first
    /// (`limit` counts in that order).
    async fn fanout_history(
        &self,
        mesh: &MeshId,
        target: &str,
        before_seq: u64,
        limit: PageLimit,
    ) -> Result<Vec<PendingMessage>, StoreError>;
    /// Delivery state of a message the member sent.
    async fn message_status(
        &self,
        mesh: &MeshId,
        sender_member: &PublicKey,
        id: &MessageId,
    ) -> Result<Option<MessageStatus>, StoreError>;

    /// Stores signed receipts (each only if it names a stored message it
    /// may be about; see [`ReceiptRow`]); a direct message's `delivered` /
    /// `shown` receipt also moves its delivery row as an ack does. One
    /// transaction.
    async fn write_receipts(&self, rows: &[ReceiptRow]) -> Result<(), StoreError>;

    /// Keeps each watermark if it covers more than the stored one of its
    /// (member, target, state). One transaction; any order converges.
    async fn write_watermarks(&self, rows: &[WatermarkRow]) -> Result<(), StoreError>;

    /// Every stored watermark of a member.
    async fn member_watermarks(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
    ) -> Result<Vec<WatermarkRow>, StoreError>;

    /// A target's stored watermarks with `upto >= min_upto`.
    async fn target_watermarks(
        &self,
        mesh: &MeshId,
        target: &str,
        min_upto: u64,
    ) -> Result<Vec<WatermarkRow>, StoreError>;

    /// Remembers a session key and the member that certified it, so messages
    /// to that session can be queued while it is offline.
    async fn record_session(
        &self,
        mesh: &MeshId,
        session: &PublicKey,
        member: &PublicKey,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// Records many sessions in one transaction (the group-commit writer
    /// batches the sessions of every hello it sees).
    async fn record_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        for s in sessions {
            self.record_session(&s.mesh, &s.session, &s.member, s.at_ms)
                .await?;
        }
        Ok(())
    }

    /// The member behind a session key seen before, if any.
    async fn session_member(
        &self,
        mesh: &MeshId,
        session: &PublicKey,
    ) -> Result<Option<PublicKey>, StoreError>;

    /// Saves a member's last presence.
    async fn save_member_state(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
        state: &MemberState,
    ) -> Result<(), StoreError>;

    /// Every member's last presence in a mesh.
    async fn member_states(
        &self,
        mesh: &MeshId,
    ) -> Result<Vec<(PublicKey, MemberState)>, StoreError>;

    /// Stores a member's signed grant set (`doc`, its JSON) if `version` is
    /// above the stored one (or none is stored); returns whether it stored.
    async fn save_grants(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
        version: u64,
        doc: &str,
    ) -> Result<bool, StoreError>;

    /// Every member's stored grant set in a mesh, as stored (unverified).
    async fn load_grants(&self, mesh: &MeshId) -> Result<Vec<(PublicKey, String)>, StoreError>;

    /// Drops the ciphertext of undelivered messages past their expiry (they
    /// stay as tombstones reported `expired`), and removes tombstones and
    /// delivered messages older than `purge_before_ms`.
    async fn sweep_retention(
        &self,
        now_ms: u64,
        purge_before_ms: u64,
    ) -> Result<RetentionOutcome, StoreError>;

    /// Drops the ciphertext of messages whose sender's deadline passed
    /// (`send.ttl_ms`), and marks their deliveries not yet shown `expired`.
    /// Returns how many messages expired.
    async fn expire_due(&self, now_ms: u64) -> Result<u64, StoreError>;

    /// Holds a message for later, unless its sender already holds `max`
    /// or it is stored already (a resend after its time came). One
    /// transaction.
    async fn hold_message(&self, held: &HeldMessage, max: u64) -> Result<HoldOutcome, StoreError>;

    /// Held messages whose time came (`deliver_at_ms <= now_ms`), soonest
    /// first, at most `limit`.
    async fn due_held(&self, now_ms: u64, limit: u32) -> Result<Vec<HeldMessage>, StoreError>;

    /// A member's held and failed messages, soonest first, at most `limit`.
    async fn held_of(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
        limit: u32,
    ) -> Result<Vec<HeldMessage>, StoreError>;

    /// Cancels a held (or failed) message of `member`'s.
    async fn cancel_held(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
        id: &MessageId,
    ) -> Result<CancelOutcome, StoreError>;

    /// Marks a held message failed (its time came and it could not be
    /// routed), with why; it stays listed for its sender until cancelled
    /// or past the retention.
    async fn fail_held(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
        id: &MessageId,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Stores a coordination object unless its id is stored already (the
    /// same bytes: `Duplicate`; others: `Conflict`), was forgotten, or its
    /// author has `max_per_member` objects stored. One transaction, which
    /// first takes the mesh's next feed position from `coord_heads`: on
    /// Postgres that row lock serializes the mesh's coordination writes
    /// across replicas, so feed order is commit order (a reader that saw
    /// `cseq` c never later sees a new change below c), and the quota count
    /// is exact. Nothing but a `Stored` changes anything.
    async fn coord_put(
        &self,
        object: &NewCoordObject,
        max_per_member: u64,
    ) -> Result<PutOutcome, StoreError>;

    /// A coordination object's author member, and whether it was forgotten.
    async fn coord_author(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
        id: &CoordId,
    ) -> Result<Option<(PublicKey, bool)>, StoreError>;

    /// A live (not forgotten) coordination object's JSON as stored.
    async fn coord_object(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
        id: &CoordId,
    ) -> Result<Option<String>, StoreError>;

    /// Forgets a coordination object: its contents go, and it moves to the
    /// mesh's next feed position as a tombstone (its id is never stored
    /// again). One transaction, serialized as [`Store::coord_put`].
    async fn coord_forget(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
        id: &CoordId,
        now_ms: u64,
    ) -> Result<ForgetOutcome, StoreError>;

    /// The mesh's changes to `kind` after feed position `after`, oldest
    /// first, each object once (at its latest change): rows are added
    /// until their sizes (a tombstone weighs [`COORD_TOMBSTONE_WEIGHT`])
    /// pass `max_bytes`, and at least one is returned. The flag is true
    /// when changes remain after the last row.
    ///
    /// [`COORD_TOMBSTONE_WEIGHT`]: super::records::COORD_TOMBSTONE_WEIGHT
    async fn coord_changes(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
        after: u64,
        max_bytes: u64,
    ) -> Result<(Vec<CoordRow>, bool), StoreError>;

    /// Applies an act to a task, in one transaction serialized as
    /// [`Store::coord_put`]: a claim takes an open task; a release gives a
    /// claimed one back (its claimant, or forced); a completion ends an
    /// open task, or a claimed one (its claimant, or forced). Each applies
    /// only to the task at the version before the act's, so of concurrent
    /// acts on one version exactly one is applied, across replicas.
    async fn task_act(&self, act: &TaskActRequest) -> Result<TaskActOutcome, StoreError>;

    /// Writes a shared state entry (`object.kind` is state) at `version`:
    /// only if the entry is at `version − 1` now (0: absent), in one
    /// transaction serialized as [`Store::coord_put`], so of concurrent
    /// writers of one version exactly one wins. A new entry counts against
    /// its writer's `max_per_member`. The same object resent is `Stored`.
    async fn state_put(
        &self,
        object: &NewCoordObject,
        version: u64,
        max_per_member: u64,
    ) -> Result<StateOutcome, StoreError>;

    /// Takes a file lease, in one transaction serialized as
    /// [`Store::coord_put`]: first the mesh's leases past their end are
    /// released (each a tombstone in the feed); then, unless a live lease of
    /// another session holds a tag of `probe` (and it or this one is
    /// exclusive), or the holder has `max_per_member` live leases, it is
    /// stored with its tags. So of two overlapping exclusive takes exactly
    /// one is granted, across replicas.
    async fn lease_take(&self, take: &LeaseTakeRequest) -> Result<LeaseOutcome, StoreError>;

    /// Extends the live leases among `ids` that `member` holds to end at
    /// `expires_at_ms`, each moving to a new feed position; returns those
    /// extended.
    async fn lease_renew(
        &self,
        mesh: &MeshId,
        member: &PublicKey,
        ids: &[CoordId],
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Vec<CoordId>, StoreError>;

    /// Stores a coordination key ring link (`link_json`, as received) unless
    /// one of `signer`'s for that scope and epoch is stored: the first
    /// stands. Returns true when one was (nothing changed).
    async fn coord_ring_put(
        &self,
        mesh: &MeshId,
        scope: &str,
        epoch: u64,
        signer: &PublicKey,
        link_json: &str,
    ) -> Result<bool, StoreError>;

    /// The mesh's ring links of epochs after `after`, as stored, with
    /// their epochs, by scope, epoch and signer.
    async fn coord_ring(&self, mesh: &MeshId, after: u64)
    -> Result<Vec<(u64, String)>, StoreError>;

    /// Every table, every row, as text (the TM1 audit and `claudemesh demo`).
    async fn dump(&self) -> Result<Vec<TableDump>, StoreError>;
}
