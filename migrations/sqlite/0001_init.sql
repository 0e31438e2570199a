-- claudemesh broker schema, SQLite. Holds only public keys, signed log
-- entries, ciphertext and routing metadata (TM1). Keys and hashes are raw
-- 32-byte blobs; times are unix milliseconds.

CREATE TABLE meshes (
    mesh_id       BLOB PRIMARY KEY,
    log_len       INTEGER NOT NULL,
    log_head      BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The membership log: signed entries, as JSON, in order.
CREATE TABLE log_entries (
    mesh_id BLOB NOT NULL REFERENCES meshes (mesh_id),
    seq     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    entry   TEXT NOT NULL,
    PRIMARY KEY (mesh_id, seq)
) WITHOUT ROWID;

-- Invites: the public key, the welcome bundle encrypted under a key only the
-- invite URL's secret gives, and the number of admits that used it.
CREATE TABLE invites (
    invite_key    BLOB PRIMARY KEY,
    mesh_id       BLOB NOT NULL REFERENCES meshes (mesh_id),
    bundle        BLOB NOT NULL,
    uses          INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Messages: one row per message, the envelope as the sender signed it.
-- `envelope` becomes NULL when retention expires an undelivered message.
CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    mesh_id       BLOB NOT NULL,
    sender_member BLOB NOT NULL,
    msg_id        BLOB NOT NULL,
    target        TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    envelope      TEXT,
    size          INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    UNIQUE (mesh_id, sender_member, msg_id)
);
CREATE INDEX messages_expiry ON messages (expires_at_ms);

-- One row per (message, recipient key): 0 queued, 1 delivered, 2 read, 3 expired.
CREATE TABLE deliveries (
    seq           INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    mesh_id       BLOB NOT NULL,
    recipient     BLOB NOT NULL,
    state         INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (seq, recipient)
) WITHOUT ROWID;
CREATE INDEX deliveries_pending ON deliveries (mesh_id, recipient, seq) WHERE state = 0;

-- Session keys seen in a hello, so a message to an offline session can queue.
CREATE TABLE sessions (
    mesh_id      BLOB NOT NULL,
    session      BLOB NOT NULL,
    member       BLOB NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (mesh_id, session)
) WITHOUT ROWID;

-- A member's last presence; `summary` is an encrypted blob (JSON).
CREATE TABLE member_state (
    mesh_id      BLOB NOT NULL,
    member       BLOB NOT NULL,
    status       TEXT NOT NULL,
    peer_type    TEXT,
    summary      TEXT,
    last_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (mesh_id, member)
) WITHOUT ROWID;
