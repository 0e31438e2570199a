-- The client's local state (`<home>/state.db`, mode 0600): the membership
-- logs this device verified, its inbox (plaintext, after verification), its
-- outbox (sealed envelopes until the broker accepts them), and envelopes it
-- refused. Keys live in key files, never here.

CREATE TABLE log_entries (
    mesh_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    entry   TEXT NOT NULL,
    PRIMARY KEY (mesh_id, seq)
) WITHOUT ROWID;

CREATE TABLE inbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    mesh_id        TEXT NOT NULL,
    sender_member  TEXT NOT NULL,
    sender_session TEXT NOT NULL,
    msg_id         TEXT NOT NULL,
    broker_seq     INTEGER NOT NULL,
    target         TEXT NOT NULL,
    priority       TEXT NOT NULL,
    reply_to       TEXT,
    sent_at        INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    body           BLOB NOT NULL,
    read_at        INTEGER,
    read_acked     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (mesh_id, sender_member, msg_id)
);
CREATE INDEX inbox_unread ON inbox (mesh_id, read_at);

CREATE TABLE outbox (
    mesh_id     TEXT NOT NULL,
    msg_id      TEXT NOT NULL,
    target      TEXT NOT NULL,
    envelope    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    state       TEXT NOT NULL,
    broker_seq  INTEGER,
    error       TEXT,
    accepted_at INTEGER,
    PRIMARY KEY (mesh_id, msg_id)
) WITHOUT ROWID;
CREATE INDEX outbox_pending ON outbox (mesh_id, state);

CREATE TABLE rejected (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    mesh_id    TEXT NOT NULL,
    broker_seq INTEGER NOT NULL,
    sender     TEXT,
    reason     TEXT NOT NULL,
    at         INTEGER NOT NULL,
    reported   INTEGER NOT NULL DEFAULT 0
);
