-- claudemesh broker schema, Postgres. The same tables as the SQLite schema
-- (migrations/sqlite): only public keys, signed log entries, ciphertext and
-- routing metadata (TM1). Keys and hashes are 32-byte bytea; times are unix
-- milliseconds.

CREATE TABLE meshes (
    mesh_id       BYTEA PRIMARY KEY,
    log_len       BIGINT NOT NULL,
    log_head      BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE log_entries (
    mesh_id BYTEA NOT NULL REFERENCES meshes (mesh_id),
    seq     BIGINT NOT NULL,
    hash    BYTEA NOT NULL,
    entry   TEXT NOT NULL,
    PRIMARY KEY (mesh_id, seq)
);

CREATE TABLE invites (
    invite_key    BYTEA PRIMARY KEY,
    mesh_id       BYTEA NOT NULL REFERENCES meshes (mesh_id),
    bundle        BYTEA NOT NULL,
    uses          BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE messages (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mesh_id       BYTEA NOT NULL,
    sender_member BYTEA NOT NULL,
    msg_id        BYTEA NOT NULL,
    target        TEXT NOT NULL,
    priority      SMALLINT NOT NULL,
    envelope      TEXT,
    size          INTEGER NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    UNIQUE (mesh_id, sender_member, msg_id)
);
CREATE INDEX messages_expiry ON messages (expires_at_ms);

CREATE TABLE deliveries (
    seq           BIGINT NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    mesh_id       BYTEA NOT NULL,
    recipient     BYTEA NOT NULL,
    state         SMALLINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (seq, recipient)
);
CREATE INDEX deliveries_pending ON deliveries (mesh_id, recipient, seq) WHERE state = 0;

CREATE TABLE sessions (
    mesh_id      BYTEA NOT NULL,
    session      BYTEA NOT NULL,
    member       BYTEA NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    PRIMARY KEY (mesh_id, session)
);

CREATE TABLE member_state (
    mesh_id      BYTEA NOT NULL,
    member       BYTEA NOT NULL,
    status       TEXT NOT NULL,
    peer_type    TEXT,
    summary      TEXT,
    last_seen_ms BIGINT NOT NULL,
    PRIMARY KEY (mesh_id, member)
);
