//! The statements both backends run word for word, written once. Each uses
//! numbered placeholders (`$1`, `$2`, …): Postgres' own, and accepted by
//! sqlx's SQLite driver too (a `$N` there binds the N-th argument, and the
//! same `$N` twice binds it twice), so a backend binds the arguments in
//! number order whichever database it talks to. Only parameters, never
//! values, go into the text (TM10).
//!
//! What is not here differs between the dialects and stays in its backend:
//! Postgres takes whole columns as arrays (`UNNEST`, `= ANY($n)`) where
//! SQLite takes multi-row `VALUES` lists, and each has its own catalog for
//! the dump and its own migration bookkeeping.

/// The highest migration applied successfully (readiness).
pub(crate) const MIGRATIONS_APPLIED: &str =
    "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";

/// A new mesh: `$1` mesh id (also the log head), `$2` created at.
pub(crate) const INSERT_MESH: &str = "INSERT INTO meshes (mesh_id, log_len, log_head, created_at_ms) \
     VALUES ($1, 1, $1, $2) ON CONFLICT (mesh_id) DO NOTHING";

/// A mesh's genesis entry: `$1` mesh id (also the entry's hash), `$2` entry.
pub(crate) const INSERT_GENESIS: &str =
    "INSERT INTO log_entries (mesh_id, seq, hash, entry) VALUES ($1, 0, $1, $2)";

/// A mesh's whole log, in one statement (one snapshot): no row at all means
/// no mesh, one row with a NULL entry an empty log. `$1` mesh id.
pub(crate) const LOAD_LOG: &str = "SELECT e.entry FROM meshes m LEFT JOIN log_entries e ON e.mesh_id = m.mesh_id \
     WHERE m.mesh_id = $1 ORDER BY e.seq";

/// Moves a log's length and head if it still has the expected length:
/// `$1` new length, `$2` new head, `$3` mesh id, `$4` expected length.
pub(crate) const MOVE_LOG_HEAD: &str =
    "UPDATE meshes SET log_len = $1, log_head = $2 WHERE mesh_id = $3 AND log_len = $4";

/// A new invite: `$1` invite key, `$2` mesh id, `$3` bundle, `$4` created at.
pub(crate) const INSERT_INVITE: &str = "INSERT INTO invites (invite_key, mesh_id, bundle, uses, created_at_ms) \
     VALUES ($1, $2, $3, 0, $4)";

/// One more use of an invite: `$1` invite key.
pub(crate) const USE_INVITE: &str = "UPDATE invites SET uses = uses + 1 WHERE invite_key = $1";

/// An invite's mesh and bundle: `$1` invite key.
pub(crate) const INVITE_BUNDLE: &str = "SELECT mesh_id, bundle FROM invites WHERE invite_key = $1";

/// A fan-out message's facts, by its identity: `$1` mesh id, `$2` sender
/// member, `$3` message id.
pub(crate) const FANOUT_FACTS: &str = "SELECT target, at_len, envelope IS NULL, tseq FROM messages \
     WHERE mesh_id = $1 AND sender_member = $2 AND msg_id = $3 AND at_len IS NOT NULL";

/// A fan-out message's seq and receipts (one row with NULLs when it has
/// none), by its identity as in [`FANOUT_FACTS`].
pub(crate) const MESSAGE_RECEIPTS: &str = "SELECT m.seq, r.member, r.state, m.deadline_ms FROM messages m \
     LEFT JOIN fanout_receipts r ON r.seq = m.seq \
     WHERE m.mesh_id = $1 AND m.sender_member = $2 AND m.msg_id = $3 \
     ORDER BY r.member";

/// A direct message's seq and delivery rows (one row with NULLs when it has
/// none), by its identity as in [`FANOUT_FACTS`].
pub(crate) const MESSAGE_DELIVERIES: &str = "SELECT m.seq, d.recipient, d.state, m.deadline_ms FROM messages m \
     LEFT JOIN deliveries d ON d.seq = m.seq \
     WHERE m.mesh_id = $1 AND m.sender_member = $2 AND m.msg_id = $3 \
     ORDER BY d.recipient";

/// Takes `$3` more numbers for a fan-out target's messages and returns the
/// last one taken: `$1` mesh id, `$2` target, `$3` how many.
pub(crate) const BUMP_TARGET_SEQ: &str = "INSERT INTO target_seqs (mesh_id, target, n) VALUES ($1, $2, $3) \
     ON CONFLICT (mesh_id, target) DO UPDATE SET n = target_seqs.n + EXCLUDED.n RETURNING n";

/// The signed receipts stored for a message, by its seq: `$1` seq.
pub(crate) const MESSAGE_RECEIPT_DOCS: &str =
    "SELECT member, doc FROM receipts WHERE seq = $1 ORDER BY member, state";

/// Stores a signed receipt if (`$1` seq, `$6` mesh, `$7` sender, `$8` id,
/// `$9` target) name one stored message and, for a direct one, the signer
/// (`$2` member, `$10` session) is one of its recipients: `$3` state,
/// `$4` at, `$5` doc.
pub(crate) const INSERT_RECEIPT: &str = "INSERT INTO receipts (seq, member, state, at_ms, doc) \
     SELECT m.seq, $2, $3, $4, $5 FROM messages m \
     WHERE m.seq = $1 AND m.mesh_id = $6 AND m.sender_member = $7 AND m.msg_id = $8 \
     AND m.target = $9 AND (m.at_len IS NOT NULL OR EXISTS (SELECT 1 FROM deliveries d \
       WHERE d.seq = m.seq AND d.recipient IN ($2, $10))) \
     ON CONFLICT (seq, member, state) DO NOTHING";

/// A direct message's `delivered` / `shown` receipt acknowledges it, as an
/// `ack` does: `$1` state rank, `$2` at, `$3` seq, `$4` mesh, `$5` member,
/// `$6` session, `$7` sender, `$8` id (the state only goes up).
pub(crate) const RECEIPT_DELIVERY: &str = "UPDATE deliveries SET state = $1, updated_at_ms = $2 \
     WHERE seq = $3 AND mesh_id = $4 AND recipient IN ($5, $6) AND state < $1 \
     AND EXISTS (SELECT 1 FROM messages m WHERE m.seq = $3 AND m.sender_member = $7 \
       AND m.msg_id = $8)";

/// Watermarks per [`upsert_watermarks`] statement (7 parameters each).
pub(crate) const WATERMARKS_PER_STATEMENT: usize = 500;

/// `n` members' watermarks, each kept if it covers more than the stored
/// one of its (member, target, state) (or as much, signed later): per row
/// mesh, member, target, state, upto, at, doc, numbered `$1`…`$7n`. A key
/// must not appear twice in one statement.
pub(crate) fn upsert_watermarks(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let p: Vec<String> = (1..=7).map(|k| format!("${}", i * 7 + k)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO watermarks (mesh_id, member, target, state, upto, at_ms, doc) VALUES {} \
         ON CONFLICT (mesh_id, member, target, state) DO UPDATE SET upto = EXCLUDED.upto, \
         at_ms = EXCLUDED.at_ms, doc = EXCLUDED.doc \
         WHERE watermarks.upto < EXCLUDED.upto \
         OR (watermarks.upto = EXCLUDED.upto AND watermarks.at_ms < EXCLUDED.at_ms)",
        rows.join(", ")
    )
}

/// A member's watermarks: `$1` mesh, `$2` member.
pub(crate) const MEMBER_WATERMARKS: &str = "SELECT member, target, state, upto, at_ms, doc FROM watermarks \
     WHERE mesh_id = $1 AND member = $2";

/// A target's watermarks reaching a number: `$1` mesh, `$2` target,
/// `$3` lowest upto.
pub(crate) const TARGET_WATERMARKS: &str = "SELECT member, target, state, upto, at_ms, doc FROM watermarks \
     WHERE mesh_id = $1 AND target = $2 AND upto >= $3";

/// Moves a member's cursor for a fan-out target forward (never back):
/// `$1` mesh id, `$2` member, `$3` target, `$4` seq.
pub(crate) const ADVANCE_FANOUT_CURSOR: &str = "INSERT INTO fanout_cursors (mesh_id, member, target, seq) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (mesh_id, member, target) DO UPDATE SET seq = EXCLUDED.seq \
     WHERE fanout_cursors.seq < EXCLUDED.seq";

/// A target's stored fan-out messages below a seq, newest first, cut by
/// the weight of their envelopes: `$1` mesh id, `$2` target, `$3` before
/// seq, `$4` most rows, `$5` bytes.
pub(crate) const FANOUT_HISTORY: &str = "WITH page AS (SELECT seq, size FROM messages \
       WHERE mesh_id = $1 AND target = $2 AND at_len IS NOT NULL AND seq < $3 \
       AND envelope IS NOT NULL ORDER BY seq DESC LIMIT $4), \
     cut AS (SELECT seq FROM (SELECT seq, \
       SUM(size) OVER (ORDER BY seq DESC) - size AS before FROM page) w \
       WHERE before < $5) \
     SELECT m.seq, m.envelope, m.created_at_ms, m.tseq, m.deadline_ms FROM cut \
     JOIN messages m ON m.seq = cut.seq ORDER BY m.seq DESC";

/// A session key and its member: `$1` mesh id, `$2` session, `$3` member,
/// `$4` seen at.
pub(crate) const RECORD_SESSION: &str = "INSERT INTO sessions (mesh_id, session, member, last_seen_ms) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (mesh_id, session) DO UPDATE SET last_seen_ms = EXCLUDED.last_seen_ms";

/// The member of a session key: `$1` mesh id, `$2` session.
pub(crate) const SESSION_MEMBER: &str =
    "SELECT member FROM sessions WHERE mesh_id = $1 AND session = $2";

/// A member's last presence: `$1` mesh id, `$2` member, `$3` status,
/// `$4` peer type, `$5` summary, `$6` last seen.
pub(crate) const SAVE_MEMBER_STATE: &str = "INSERT INTO member_state (mesh_id, member, status, peer_type, summary, last_seen_ms) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (mesh_id, member) DO UPDATE SET \
     status = EXCLUDED.status, peer_type = EXCLUDED.peer_type, \
     summary = EXCLUDED.summary, last_seen_ms = EXCLUDED.last_seen_ms";

/// Every member's last presence in a mesh: `$1` mesh id.
pub(crate) const MEMBER_STATES: &str = "SELECT member, status, peer_type, summary, last_seen_ms FROM member_state \
     WHERE mesh_id = $1 ORDER BY member";

/// A member's grant set if newer than the stored one: `$1` mesh id,
/// `$2` member, `$3` version, `$4` document.
pub(crate) const SAVE_GRANTS: &str = "INSERT INTO grants (mesh_id, member, version, doc) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (mesh_id, member) DO UPDATE SET version = EXCLUDED.version, \
     doc = EXCLUDED.doc WHERE grants.version < EXCLUDED.version";

/// Every member's grant set in a mesh: `$1` mesh id.
pub(crate) const LOAD_GRANTS: &str =
    "SELECT member, doc FROM grants WHERE mesh_id = $1 ORDER BY member";

/// Retention, first: queued deliveries of messages past their expiry
/// become `expired` (state 3). `$1` now.
pub(crate) const EXPIRE_DELIVERIES: &str = "UPDATE deliveries SET state = 3, updated_at_ms = $1 WHERE state = 0 AND seq IN \
     (SELECT seq FROM messages WHERE expires_at_ms <= $1 AND envelope IS NOT NULL)";

/// Retention, second: the ciphertext of messages past their expiry goes
/// (the rows stay as tombstones). `$1` now.
pub(crate) const EXPIRE_MESSAGES: &str =
    "UPDATE messages SET envelope = NULL WHERE expires_at_ms <= $1 AND envelope IS NOT NULL";

/// Retention, last: tombstones and delivered messages older than `$1` go.
pub(crate) const PURGE_MESSAGES: &str = "DELETE FROM messages WHERE expires_at_ms <= $1";

/// Whether any message's deadline has passed with its ciphertext still
/// stored: `$1` now.
pub(crate) const ANY_DUE: &str = "SELECT EXISTS (SELECT 1 FROM messages \
     WHERE deadline_ms <= $1 AND envelope IS NOT NULL)";

/// A TTL ran out, first: deliveries not yet shown of messages past their
/// deadline become `expired` (state 3). `$1` now.
pub(crate) const EXPIRE_DUE_DELIVERIES: &str = "UPDATE deliveries SET state = 3, updated_at_ms = $1 WHERE state < 2 AND seq IN \
     (SELECT seq FROM messages WHERE deadline_ms <= $1 AND envelope IS NOT NULL)";

/// A TTL ran out, second: the ciphertext goes (the row stays, reported
/// `expired` to whoever had not been shown it). `$1` now.
pub(crate) const EXPIRE_DUE_MESSAGES: &str =
    "UPDATE messages SET envelope = NULL WHERE deadline_ms <= $1 AND envelope IS NOT NULL";

/// A held message's stored twin, once its time came: `$1` mesh id, `$2`
/// sender member, `$3` message id.
pub(crate) const STORED_SEQ: &str =
    "SELECT seq, tseq FROM messages WHERE mesh_id = $1 AND sender_member = $2 AND msg_id = $3";

/// How many messages a member holds for later (held or failed; not the
/// marks of cancelled ones): `$1` mesh id, `$2` member.
pub(crate) const COUNT_HELD: &str = "SELECT COUNT(*) FROM scheduled_messages \
     WHERE mesh_id = $1 AND sender_member = $2 AND state < 2";

/// Holds a message for later: a resend of a held one keeps the first
/// hold; one of a failed one (resealed under the current key, say) holds
/// it again in its place. `$1` mesh id, `$2` sender member, `$3` message
/// id, `$4` target, `$5` priority, `$6` envelope, `$7` size, `$8` TTL, `$9`
/// deliver at, `$10` created at.
pub(crate) const HOLD_MESSAGE: &str = "INSERT INTO scheduled_messages (mesh_id, sender_member, msg_id, target, priority, \
     envelope, size, ttl_ms, deliver_at_ms, created_at_ms, state) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0) \
     ON CONFLICT (mesh_id, sender_member, msg_id) DO UPDATE SET target = excluded.target, \
     priority = excluded.priority, envelope = excluded.envelope, size = excluded.size, \
     ttl_ms = excluded.ttl_ms, deliver_at_ms = excluded.deliver_at_ms, \
     created_at_ms = excluded.created_at_ms, state = 0, error = NULL \
     WHERE scheduled_messages.state = 1";

/// A held message's time and state (0 held, 1 failed, 2 cancelled), by its
/// identity as in [`STORED_SEQ`].
pub(crate) const HELD_AT: &str = "SELECT deliver_at_ms, state FROM scheduled_messages \
     WHERE mesh_id = $1 AND sender_member = $2 AND msg_id = $3";

/// The columns a [`HeldMessage`](super::HeldMessage) is read from, in order.
macro_rules! held_columns {
    () => {
        "SELECT mesh_id, sender_member, msg_id, target, priority, envelope, ttl_ms, \
         deliver_at_ms, created_at_ms, error FROM scheduled_messages "
    };
}

/// Held messages whose time came, soonest first: `$1` now, `$2` limit.
pub(crate) const DUE_HELD: &str = concat!(
    held_columns!(),
    "WHERE state = 0 AND deliver_at_ms <= $1 \
     ORDER BY deliver_at_ms, mesh_id, sender_member, msg_id LIMIT $2"
);

/// Whether any held message's time came: `$1` now (an index probe, asked
/// every second).
pub(crate) const ANY_HELD_DUE: &str =
    "SELECT EXISTS (SELECT 1 FROM scheduled_messages WHERE state = 0 AND deliver_at_ms <= $1)";

/// A member's held (and failed) messages, soonest first: `$1` mesh id,
/// `$2` member, `$3` limit.
pub(crate) const HELD_OF: &str = concat!(
    held_columns!(),
    "WHERE mesh_id = $1 AND sender_member = $2 AND state < 2 \
     ORDER BY deliver_at_ms, msg_id LIMIT $3"
);

/// Takes a held message whose time came, in the transaction that stores
/// it: a row comes back only if it is still held and due by `$4` (the
/// firing's now: a row cancelled and held again for later since the sweep
/// read it is not taken early). Identity as in [`STORED_SEQ`].
pub(crate) const TAKE_HELD: &str = "DELETE FROM scheduled_messages \
     WHERE mesh_id = $1 AND sender_member = $2 AND msg_id = $3 AND state = 0 \
     AND deliver_at_ms <= $4 RETURNING 1";

/// Cancels a held (or failed) message: the row stays, marked cancelled
/// (state 2) without its envelope, until the retention, so a resend of
/// the same id (another device's, an idempotent retry) is refused rather
/// than held again. Identity as in [`STORED_SEQ`].
pub(crate) const CANCEL_HELD: &str = "UPDATE scheduled_messages SET state = 2, envelope = '', error = NULL \
     WHERE mesh_id = $1 AND sender_member = $2 AND msg_id = $3 AND state < 2 RETURNING 1";

/// Drops any row of an id that is stored (a failed one sent again at
/// once): it is a message now, not a held one. Identity as in
/// [`STORED_SEQ`].
pub(crate) const FORGET_HELD: &str = "DELETE FROM scheduled_messages \
     WHERE mesh_id = $1 AND sender_member = $2 AND msg_id = $3";

/// A held message could not be sent at its time: `$4` why. Identity as
/// in [`STORED_SEQ`].
pub(crate) const FAIL_HELD: &str = "UPDATE scheduled_messages SET state = 1, error = $4 \
     WHERE mesh_id = $1 AND sender_member = $2 AND msg_id = $3 AND state = 0";

/// Failed held messages, and the marks of cancelled ones, past the
/// retention go: `$1` purge before.
pub(crate) const PURGE_FAILED_HELD: &str =
    "DELETE FROM scheduled_messages WHERE state > 0 AND deliver_at_ms < $1";

/// Takes a mesh's next coordination feed position: `$1` mesh id. The first
/// statement of every coordination write, so its row lock (Postgres) is
/// held to the commit: the mesh's writes serialize across replicas, and a
/// position is visible only after every lower one is.
pub(crate) const COORD_NEXT_CSEQ: &str = "INSERT INTO coord_heads (mesh_id, cseq) VALUES ($1, 1) \
     ON CONFLICT (mesh_id) DO UPDATE SET cseq = coord_heads.cseq + 1 RETURNING cseq";

/// A coordination object's stored JSON (NULL once forgotten), feed
/// position, author and whether it was forgotten: `$1` mesh id, `$2` kind,
/// `$3` id.
pub(crate) const COORD_OBJECT: &str = "SELECT object, cseq, author_member, object IS NULL FROM coord_objects \
     WHERE mesh_id = $1 AND kind = $2 AND id = $3";

/// How many objects (of any kind, not forgotten) a member has stored in a
/// mesh: `$1` mesh id, `$2` member.
pub(crate) const COORD_COUNT_AUTHOR: &str = "SELECT COUNT(*) FROM coord_objects \
     WHERE mesh_id = $1 AND author_member = $2 AND object IS NOT NULL";

/// A new coordination object: `$1` mesh id, `$2` kind, `$3` id, `$4`
/// author member, `$5` epoch, `$6` feed position, `$7` JSON, `$8` size,
/// `$9` now.
pub(crate) const COORD_INSERT: &str = "INSERT INTO coord_objects (mesh_id, kind, id, author_member, epoch, cseq, \
     object, size, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Forgets a stored coordination object: its JSON goes and it moves to
/// feed position `$4` (a tombstone): `$1` mesh id, `$2` kind, `$3` id, `$5`
/// now.
pub(crate) const COORD_FORGET: &str = "UPDATE coord_objects SET object = NULL, act = NULL, holder_member = NULL, tags = NULL, \
     cseq = $4, updated_at_ms = $5 \
     WHERE mesh_id = $1 AND kind = $2 AND id = $3 AND object IS NOT NULL";

/// The mesh's changes to a kind after a feed position, oldest first, cut
/// by weight (each row's size, a tombstone's `$5`): rows are kept while
/// the weight before them is under `$4`, so the first always is. `$1` mesh
/// id, `$2` kind, `$3` after, `$6` most rows looked at.
pub(crate) const COORD_CHANGES: &str = "WITH page AS (SELECT cseq, id, object, act, expires_at_ms, \
       CASE WHEN object IS NULL THEN $5 ELSE size END AS weight FROM coord_objects \
       WHERE mesh_id = $1 AND kind = $2 AND cseq > $3 ORDER BY cseq LIMIT $6), \
     cut AS (SELECT cseq, id, object, act, expires_at_ms, \
       SUM(weight) OVER (ORDER BY cseq) - weight AS before FROM page) \
     SELECT cseq, id, object, act, expires_at_ms FROM cut WHERE before < $4 ORDER BY cseq";

/// A task as the broker arbitrates it: version, phase, holder, creator,
/// whether it was deleted, the last act's JSON and the feed position: `$1`
/// mesh id, `$2` task id.
pub(crate) const COORD_TASK: &str = "SELECT version, phase, holder_member, author_member, \
     object IS NULL, act, cseq FROM coord_objects WHERE mesh_id = $1 AND kind = 'task' AND id = $2";

/// Applies an act to a task: `$1` mesh id, `$2` task id, `$3` new version,
/// `$4` new phase, `$5` holder, `$6` the act's JSON (its size is added to
/// the row's weight in the feed), `$7` feed position, `$8` now.
pub(crate) const COORD_TASK_ACT: &str = "UPDATE coord_objects SET version = $3, phase = $4, \
     holder_member = $5, act = $6, cseq = $7, updated_at_ms = $8, \
     size = LENGTH(object) + LENGTH($6) \
     WHERE mesh_id = $1 AND kind = 'task' AND id = $2 AND object IS NOT NULL";

/// A shared state entry's version, JSON and feed position: `$1` mesh id,
/// `$2` entry id.
pub(crate) const COORD_STATE: &str = "SELECT version, object, cseq FROM coord_objects \
     WHERE mesh_id = $1 AND kind = 'state' AND id = $2";

/// Rewrites a shared state entry at a new version: `$1` mesh id, `$2`
/// entry id, `$3` JSON, `$4` writer member, `$5` epoch, `$6` feed position,
/// `$7` size, `$8` now, `$9` version.
pub(crate) const COORD_STATE_UPDATE: &str = "UPDATE coord_objects SET object = $3, author_member = $4, \
     epoch = $5, cseq = $6, size = $7, updated_at_ms = $8, version = $9 \
     WHERE mesh_id = $1 AND kind = 'state' AND id = $2";

/// The mesh's live leases (not released, not past `$2`): id, holder
/// member, holder session, exclusive, end, JSON and tags. `$1` mesh id.
pub(crate) const LEASES_LIVE: &str = "SELECT id, author_member, holder_session, exclusive, \
     expires_at_ms, object, tags FROM coord_objects \
     WHERE mesh_id = $1 AND kind = 'lease' AND object IS NOT NULL AND expires_at_ms > $2";

/// The mesh's leases past their end (not yet released): `$1` mesh id, `$2`
/// now, `$3` most.
pub(crate) const LEASES_EXPIRED: &str = "SELECT id FROM coord_objects \
     WHERE mesh_id = $1 AND kind = 'lease' AND object IS NOT NULL AND expires_at_ms <= $2 \
     ORDER BY expires_at_ms LIMIT $3";

/// How many live leases a member holds: `$1` mesh id, `$2` member, `$3` now.
pub(crate) const LEASES_OF: &str = "SELECT COUNT(*) FROM coord_objects \
     WHERE mesh_id = $1 AND kind = 'lease' AND object IS NOT NULL AND author_member = $2 \
     AND expires_at_ms > $3";

/// A granted lease's arbitration facts: `$1` mesh id, `$2` lease id, `$3`
/// holder session, `$4` exclusive, `$5` end, `$6` tags.
pub(crate) const LEASE_GRANT: &str = "UPDATE coord_objects SET holder_session = $3, exclusive = $4, \
     expires_at_ms = $5, tags = $6 WHERE mesh_id = $1 AND kind = 'lease' AND id = $2";

/// Extends a live lease of a member's: `$1` mesh id, `$2` lease id, `$3`
/// member, `$4` now, `$5` new end, `$6` feed position.
pub(crate) const LEASE_RENEW: &str = "UPDATE coord_objects SET expires_at_ms = $5, cseq = $6, updated_at_ms = $4 \
     WHERE mesh_id = $1 AND kind = 'lease' AND id = $2 AND author_member = $3 \
     AND object IS NOT NULL AND expires_at_ms > $4";

/// Whether the mesh has changes to a kind after a feed position: `$1` mesh
/// id, `$2` kind, `$3` after.
pub(crate) const COORD_ANY_AFTER: &str = "SELECT EXISTS (SELECT 1 FROM coord_objects \
     WHERE mesh_id = $1 AND kind = $2 AND cseq > $3)";

/// A ring link unless the signer has one for that scope and epoch (the
/// first stands): `$1` mesh id, `$2` scope, `$3` epoch, `$4` signer member,
/// `$5` JSON.
pub(crate) const COORD_RING_PUT: &str = "INSERT INTO coord_ring (mesh_id, scope, epoch, signer_member, link) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (mesh_id, scope, epoch, signer_member) DO NOTHING";

/// A mesh's ring links of epochs after `$2`, with their epochs: `$1` mesh id.
pub(crate) const COORD_RING: &str = "SELECT epoch, link FROM coord_ring WHERE mesh_id = $1 AND epoch > $2 \
     ORDER BY scope, epoch, signer_member";
