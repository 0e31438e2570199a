//! The rows the broker hands to and gets from a [`super::Store`], as plain
//! data: what a message, an ack, a page limit, a member's presence or a log
//! append is, whichever database keeps it.

use claudemesh_crypto::coord::{CoordId, CoordKind};
use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::PeerType;
use claudemesh_crypto::receipt::ReceiptState;
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::frames::{DeliveryState, EncryptedBlob, Status, TaskPhase};

/// A message to store: the envelope as the sender signed it (JSON, with the
/// ciphertext in base64) and the routing facts the broker derived from it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The mesh.
    pub mesh: MeshId,
    /// The sender's member key: (mesh, sender_member, id) is unique.
    pub sender_member: PublicKey,
    /// The sender's message id.
    pub id: MessageId,
    /// The target as on the wire (`member:<hex>`, `session:<hex>`, …).
    pub target: String,
    /// Delivery priority (from the signed envelope).
    pub priority: Priority,
    /// The envelope, JSON.
    pub envelope_json: String,
    /// Recipient keys (member or session): one delivery row each for a
    /// direct message; for a fan-out message only who gets it live (no rows).
    pub recipients: Vec<PublicKey>,
    /// Fan-out (`*`, `@group`, `#topic`) messages: the log length when the
    /// broker accepted it, which fixes its recipients. `None` for direct.
    pub at_len: Option<u64>,
    /// When the broker received it, unix ms.
    pub created_at_ms: u64,
    /// When retention removes it if still undelivered, unix ms.
    pub expires_at_ms: u64,
    /// The sender's deadline (`send.ttl_ms`), unix ms: not shown by then,
    /// it is dropped and reported `expired`.
    pub deadline_ms: Option<u64>,
    /// A message held for later whose time came: stored only if its
    /// `scheduled_messages` row is still held, which the same transaction
    /// deletes (so it is stored once, and never after a cancel). One that
    /// is not is reported a duplicate, and nothing is stored.
    pub held: bool,
}

/// A message held for later (`send.deliver_at_ms`): the envelope as its
/// sender signed it, and what routing it needs at its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    /// The mesh.
    pub mesh: MeshId,
    /// The sender's member key: (mesh, sender_member, id) is unique, here
    /// and among stored messages.
    pub sender_member: PublicKey,
    /// The sender's message id.
    pub id: MessageId,
    /// The target as on the wire.
    pub target: String,
    /// Delivery priority (from the signed envelope).
    pub priority: Priority,
    /// The envelope, JSON.
    pub envelope_json: String,
    /// The sender's time to live, counted from delivery.
    pub ttl_ms: Option<u64>,
    /// When to store and deliver it, unix ms.
    pub deliver_at_ms: u64,
    /// When the broker took it, unix ms.
    pub created_at_ms: u64,
    /// Why it could not be sent at its time (`None` while held).
    pub error: Option<String>,
}

/// What holding a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Held until `deliver_at_ms` (`duplicate`: it already was, and the
    /// first hold's time stands).
    Held {
        /// When it will be delivered.
        deliver_at_ms: u64,
        /// It was already held.
        duplicate: bool,
    },
    /// Its time came before this resend: it is stored, as `seq`.
    AlreadySent {
        /// Its broker sequence number.
        seq: u64,
        /// Its number within its target (fan-out).
        tseq: Option<u64>,
    },
    /// The sender already holds the most messages it may.
    TooMany,
    /// This id was cancelled: it is never held again.
    Cancelled,
}

/// A batch without the held messages its transaction could not take
/// (`taken[i]` false: cancelled, or fired by another writer or replica
/// first), or `None` when it took them all (every batch but a rare one:
/// nothing is copied then).
pub(crate) fn taken_only(messages: &[NewMessage], taken: &[bool]) -> Option<Vec<NewMessage>> {
    if taken.iter().all(|t| *t) {
        return None;
    }
    Some(
        messages
            .iter()
            .zip(taken)
            .filter(|(_, t)| **t)
            .map(|(m, _)| m.clone())
            .collect(),
    )
}

/// The outcomes of a whole batch from those of [`taken_only`]'s: each
/// left-out message is reported a duplicate with seq 0, so the writer
/// neither delivers nor answers it.
pub(crate) fn with_untaken(taken: &[bool], stored: Vec<InsertOutcome>) -> Vec<InsertOutcome> {
    let left_out = InsertOutcome {
        seq: 0,
        duplicate: true,
        tseq: None,
    };
    let mut stored = stored.into_iter();
    taken
        .iter()
        .map(|t| {
            if *t {
                stored.next().unwrap_or(left_out)
            } else {
                left_out
            }
        })
        .collect()
}

/// What cancelling a held message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was held (or had failed) and is gone.
    Cancelled,
    /// Its time came first: it is stored, as `seq`.
    AlreadySent {
        /// Its broker sequence number.
        seq: u64,
    },
    /// No such message was ever held, or it was cancelled before.
    NotFound,
}

/// A coordination object to store (a team memory note): the sealed, signed
/// object as its author sent it, and the facts the broker checked and
/// orders by. The broker never reads its contents.
#[derive(Debug, Clone)]
pub struct NewCoordObject {
    /// The mesh.
    pub mesh: MeshId,
    /// What it holds.
    pub kind: CoordKind,
    /// Its client-made id: (mesh, kind, id) is unique, forever (a
    /// forgotten id is never stored again).
    pub id: CoordId,
    /// The author's member key (counted against its quota).
    pub author_member: PublicKey,
    /// The epoch whose coordination key seals it.
    pub epoch: u64,
    /// The `CoordObject` as JSON (what was received, serialized again: the
    /// same object always gives the same bytes); its length is the row's
    /// size.
    pub object_json: String,
    /// When the broker took it, unix ms.
    pub now_ms: u64,
}

/// What storing a coordination object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored as feed position `cseq`.
    Stored {
        /// Its position in the mesh's coordination feed.
        cseq: u64,
    },
    /// The same id was already stored with byte-identical JSON (a resend).
    Duplicate {
        /// The stored one's feed position.
        cseq: u64,
    },
    /// The same id is stored with other contents: nothing changed.
    Conflict,
    /// The id was forgotten: it is never stored again.
    Forgotten,
    /// The author has as many objects stored as it may.
    TooMany,
}

/// What forgetting a coordination object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgetOutcome {
    /// Forgotten now: its tombstone is feed position `cseq`.
    Forgotten {
        /// The tombstone's feed position.
        cseq: u64,
    },
    /// It was forgotten before, as feed position `cseq`.
    AlreadyForgotten {
        /// The tombstone's feed position.
        cseq: u64,
    },
    /// No object of that kind and id was ever stored in the mesh.
    NotFound,
}

/// What a forgotten object's row weighs in a page of
/// [`super::Store::coord_changes`] (about its `coord_change` on the wire):
/// a page of tombstones is cut like one of objects.
pub const COORD_TOMBSTONE_WEIGHT: u64 = 64;

/// One change of the coordination feed, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordRow {
    /// Its feed position.
    pub cseq: u64,
    /// The object's id.
    pub id: CoordId,
    /// The object's JSON as received; `None` once forgotten.
    pub object_json: Option<String>,
    /// A task's last act, as received.
    pub act_json: Option<String>,
    /// A lease's end (unix ms).
    pub expires_at_ms: Option<u64>,
}

/// A lease to take ([`super::Store::lease_take`]).
#[derive(Debug, Clone)]
pub struct LeaseTakeRequest {
    /// The lease object (kind lease) as it is to be stored.
    pub new: NewCoordObject,
    /// The session taking it (its own leases never conflict with it).
    pub session: PublicKey,
    /// Exclusive, or shared (conflicts with exclusive leases only).
    pub exclusive: bool,
    /// When it ends, unix ms.
    pub expires_at_ms: u64,
    /// Its keyed path tags.
    pub tags: Vec<CoordId>,
    /// The tags that meet an overlapping lease.
    pub probe: Vec<CoordId>,
    /// Most live leases one member may hold.
    pub max_per_member: u64,
    /// Most conflicting leases to report.
    pub max_conflicts: usize,
    /// Stop reporting conflicting leases once their JSON passes this many
    /// bytes (at least one is reported).
    pub max_conflict_bytes: usize,
    /// Members no longer in the mesh: their leases stand in no one's way
    /// and are released by this take.
    pub departed: Vec<PublicKey>,
}

/// A live lease, as the broker arbitrates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Its id.
    pub id: CoordId,
    /// Its holder's member.
    pub holder: PublicKey,
    /// The session that took it.
    pub session: PublicKey,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// When it ends, unix ms.
    pub expires_at_ms: u64,
    /// The lease object's JSON as received.
    pub object_json: String,
}

/// What became of a [`LeaseTakeRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Granted, at feed position `cseq`.
    Granted {
        /// Its feed position.
        cseq: u64,
    },
    /// Live leases of other sessions overlap it (and one of each pair is
    /// exclusive): nothing was stored.
    Conflict(Vec<LeaseRow>),
    /// Its holder has as many live leases as it may.
    TooMany,
    /// A lease of that id is (or was) stored already.
    Exists,
}

/// What became of a shared state write ([`super::Store::state_put`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOutcome {
    /// Stored at feed position `cseq` (or it was stored already: the same
    /// object resent).
    Stored {
        /// Its feed position.
        cseq: u64,
    },
    /// The entry is not at the version before the write's: it is at
    /// `version` (0: absent) with this JSON, at feed position `cseq`.
    Moved {
        /// Its version now.
        version: u64,
        /// Its JSON now.
        object_json: Option<String>,
        /// Its feed position now (0: absent).
        cseq: u64,
    },
    /// The writer has as many objects stored as it may.
    TooMany,
}

/// An act on a task, as the broker applies it ([`super::Store::task_act`]).
#[derive(Debug, Clone)]
pub struct TaskActRequest {
    /// The mesh.
    pub mesh: MeshId,
    /// The task.
    pub id: CoordId,
    /// Claim, release or complete ([`CoordKind::is_task_act`]).
    pub kind: CoordKind,
    /// The version the act makes (the signed `rev`): it applies only to
    /// the task at the version before.
    pub version: u64,
    /// The member acting (the act's signer).
    pub actor: PublicKey,
    /// The act may take the task from another claimant: the frame asked
    /// (`force`) and the actor is an owner or admin. The task's creator
    /// may too; the store checks that.
    pub force: bool,
    /// The actor is an owner or admin of the mesh.
    pub actor_is_admin: bool,
    /// The members whose grants refuse the actor `task` (TM7): it may not
    /// claim or complete a task one of them created.
    pub refused_by: Vec<PublicKey>,
    /// Members no longer in the mesh: a task one of them holds is anyone's
    /// to claim, give back or complete.
    pub departed: Vec<PublicKey>,
    /// The act's JSON as received.
    pub act_json: String,
    /// Now, unix ms.
    pub now_ms: u64,
}

/// A task as the broker arbitrates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    /// 1 when created, one more per act.
    pub version: u64,
    /// Where it stands.
    pub phase: TaskPhase,
    /// The claimant (claimed), or who completed it (done).
    pub holder: Option<PublicKey>,
    /// The member who created it.
    pub creator: PublicKey,
    /// The last act's JSON as received.
    pub act_json: Option<String>,
    /// Its feed position.
    pub cseq: u64,
}

/// What became of a [`TaskActRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskActOutcome {
    /// Applied; the task as it is now.
    Applied(TaskRow),
    /// The task is not at the version the act moves from, or its phase
    /// allows no such act (claimed or done already): a lost race, with the
    /// task as it is.
    Lost(TaskRow),
    /// Another member holds it, and the act was not forced by someone who
    /// may (its creator, an owner or an admin).
    Held(TaskRow),
    /// The task's creator's grants refuse the actor `task`, and the act
    /// would claim or complete it.
    Refused(TaskRow),
    /// No such task, or it was deleted.
    NotFound,
}

/// A session key seen in a hello, and the member that certified it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The mesh.
    pub mesh: MeshId,
    /// The session key.
    pub session: PublicKey,
    /// Its member.
    pub member: PublicKey,
    /// When, unix ms.
    pub at_ms: u64,
}

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertOutcome {
    /// The broker sequence number (the original one for a duplicate).
    pub seq: u64,
    /// True when (sender, id) was already stored: nothing new was written.
    pub duplicate: bool,
    /// A new fan-out message's number within its target (1, 2, 3, … per
    /// (mesh, target), in commit order); `None` for direct messages and
    /// duplicates.
    pub tseq: Option<u64>,
}

/// A recipient's acknowledgement of delivered (or read) messages. Only rows
/// addressed to `member` or `session` are touched, so a peer can never ack
/// someone else's messages.
#[derive(Debug, Clone)]
pub struct AckOp {
    /// The mesh.
    pub mesh: MeshId,
    /// The acking connection's member key.
    pub member: PublicKey,
    /// The acking connection's session key.
    pub session: PublicKey,
    /// Broker sequence numbers.
    pub seqs: Vec<u64>,
    /// `Read` or `Delivered`.
    pub state: DeliveryState,
    /// Unix ms.
    pub at_ms: u64,
    /// The fan-out targets the member may have received messages of, each
    /// with the log length above which (exclusive) it could have been a
    /// recipient (`fanout::member_targets`). A fan-out receipt is written
    /// only for a message of one of them: an ack of seqs the member never
    /// received (a private topic it is not in, made-up numbers) writes
    /// nothing.
    pub fanout_targets: Vec<(String, u64)>,
}

impl AckOp {
    /// Whether this ack may write a receipt for a fan-out message of
    /// `target` accepted at log length `at_len`.
    pub fn may_receipt(&self, target: &str, at_len: u64) -> bool {
        self.fanout_targets
            .iter()
            .any(|(t, since)| t == target && at_len > *since)
    }
}

/// How much one page of stored messages may hold: at most `rows` of them,
/// and — counting their envelopes' sizes in seq order — it stops after the
/// first that reaches `bytes` (so a page always holds at least one, and at
/// most `bytes` plus one envelope). A drain holds its page while a slow
/// reader takes it, so pages are bounded by what they weigh, not only by
/// how many they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    /// Most messages.
    pub rows: u32,
    /// Bytes of envelopes after which the page stops.
    pub bytes: u64,
}

impl PageLimit {
    /// Whether a page of `len` messages weighing `bytes` may have been cut
    /// by this limit (more may follow at once): it holds as many as it may,
    /// or its weight reached the limit (a page stops after the message that
    /// reaches it; one that stayed below was not cut).
    pub fn may_be_cut(&self, len: usize, bytes: u64) -> bool {
        len >= self.rows as usize || bytes >= self.bytes
    }
}

/// The first rows of `rows` (already in page order) within `limit`: at most
/// `limit.rows`, stopping after the row whose `weight` reaches
/// `limit.bytes` (always at least one).
pub fn first_of<T>(rows: Vec<T>, limit: PageLimit, weight: impl Fn(&T) -> u64) -> Vec<T> {
    let mut out = Vec::with_capacity(rows.len().min(limit.rows as usize));
    let mut bytes = 0u64;
    for r in rows {
        if out.len() >= limit.rows as usize || bytes >= limit.bytes {
            break;
        }
        bytes = bytes.saturating_add(weight(&r));
        out.push(r);
    }
    out
}

/// What a drain page of fan-out rows weighs: the envelopes it carries.
pub fn fanout_weight(rows: &[FanoutRow]) -> u64 {
    rows.iter()
        .map(|r| r.envelope_json.as_ref().map_or(0, |e| e.len() as u64))
        .sum()
}

impl From<u32> for PageLimit {
    /// A limit in rows only.
    fn from(rows: u32) -> Self {
        PageLimit {
            rows,
            bytes: u64::MAX / 2,
        }
    }
}

/// A stored message waiting for a recipient.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    /// Broker sequence number.
    pub seq: u64,
    /// The envelope JSON.
    pub envelope_json: String,
    /// When it was stored, unix ms.
    pub queued_at_ms: u64,
    /// A fan-out message's number within its target.
    pub tseq: Option<u64>,
    /// The sender's deadline, unix ms.
    pub deadline_ms: Option<u64>,
}

/// Per-recipient delivery state of one message.
#[derive(Debug, Clone)]
pub struct MessageStatus {
    /// Broker sequence number.
    pub seq: u64,
    /// Direct: each recipient and its state. Fan-out: only the recipients
    /// that acked (the broker works out the rest from the log).
    pub recipients: Vec<(PublicKey, DeliveryState)>,
    /// Set for a fan-out message.
    pub fanout: Option<FanoutFacts>,
    /// The sender's deadline, unix ms.
    pub deadline_ms: Option<u64>,
    /// Signed receipts stored for it: (recipient member, receipt JSON).
    pub receipts: Vec<(PublicKey, String)>,
}

/// What the store knows of a fan-out message, for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutFacts {
    /// The target as on the wire.
    pub target: String,
    /// The log length when it was accepted.
    pub at_len: u64,
    /// Retention dropped its ciphertext.
    pub expired: bool,
    /// Its number within its target (`None`: stored before numbering).
    pub tseq: Option<u64>,
}

/// One fan-out message of a target, as a drain sees it for one member.
#[derive(Debug, Clone)]
pub struct FanoutRow {
    /// Broker sequence number.
    pub seq: u64,
    /// Its target as on the wire (`*`, `@group`, `#topic`).
    pub target: String,
    /// The log length when it was accepted.
    pub at_len: u64,
    /// When it was stored, unix ms.
    pub queued_at_ms: u64,
    /// The member already acked it.
    pub acked: bool,
    /// The envelope JSON; `None` when acked (not needed) or expired.
    pub envelope_json: Option<String>,
    /// The sender's member key (grants are judged against it).
    pub sender: PublicKey,
    /// Delivery priority (a drain on behalf of a busy session takes only
    /// `now`).
    pub priority: Priority,
    /// Its number within its target (`None`: stored before numbering).
    pub tseq: Option<u64>,
    /// The sender's deadline, unix ms.
    pub deadline_ms: Option<u64>,
}

/// A signed receipt to store (`docs/security.md` §8.1), with the facts the
/// broker checked against the connection that sent it. Stored only when
/// (`seq`, `sender`, `id`, `target`) name one stored message, and for a
/// direct message only when the signer is one of its recipients.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    /// The mesh.
    pub mesh: MeshId,
    /// The signing member (the connection's).
    pub member: PublicKey,
    /// The signing session (the connection's).
    pub session: PublicKey,
    /// The seq of the message it is about.
    pub seq: u64,
    /// That message's sender member, as signed.
    pub sender: PublicKey,
    /// That message's id, as signed.
    pub id: MessageId,
    /// That message's target as on the wire, as signed.
    pub target: String,
    /// Whether the target is direct (`member:`, `session:`).
    pub direct: bool,
    /// What it attests.
    pub state: ReceiptState,
    /// The recipient's clock, unix ms.
    pub at_ms: u64,
    /// The receipt, JSON.
    pub doc: String,
}

/// A member's signed watermark for one fan-out target and state, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkRow {
    /// The mesh.
    pub mesh: MeshId,
    /// The signing member.
    pub member: PublicKey,
    /// The target as on the wire.
    pub target: String,
    /// `Delivered` or `Shown`.
    pub state: ReceiptState,
    /// Highest per-target number covered.
    pub upto: u64,
    /// The recipient's clock, unix ms.
    pub at_ms: u64,
    /// The watermark, JSON.
    pub doc: String,
}

/// A member's last known presence, kept for when it is offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// Last status set.
    pub status: Status,
    /// Declared peer type.
    pub peer_type: Option<PeerType>,
    /// Last encrypted summary.
    pub summary: Option<EncryptedBlob>,
    /// Last time any of its sessions was connected, unix ms.
    pub last_seen_ms: u64,
}

/// The result of an append that expected the log at a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written.
    Appended,
    /// The log is no longer at the expected length (another replica wrote).
    Conflict,
}

/// Extra rows written atomically with a log append.
#[derive(Debug, Clone, Default)]
pub struct AppendExtras {
    /// A new invite's key and its encrypted welcome bundle.
    pub new_invite: Option<(PublicKey, Vec<u8>)>,
    /// The invite an `admit` consumed (its use counter goes up by one).
    pub used_invite: Option<PublicKey>,
}

/// One table's rows rendered as text (blobs as hex), for the TM1 audit and
/// the demo.
#[derive(Debug, Clone)]
pub struct TableDump {
    /// Table name.
    pub table: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<String>>,
}

/// What a retention sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Messages whose ciphertext was dropped (still reported as `expired`).
    pub expired: u64,
    /// Tombstones removed for good.
    pub purged: u64,
}
