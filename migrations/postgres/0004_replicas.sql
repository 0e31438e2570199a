-- Replicas: several brokers serving the same meshes from one database.
-- Each running broker instance keeps a row here and moves its heartbeat
-- every few seconds (by the database's clock); an instance whose heartbeat
-- is older than three intervals is dead, and whichever replica notices
-- removes it and its sessions (a SIGKILLed broker says nothing).
CREATE TABLE brokers (
    broker_id       TEXT PRIMARY KEY,
    started_at_ms   BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL
);

-- Sessions connected to some broker instance right now, so that presence
-- and peer lists on every replica include the others' sessions. Only
-- public data: the session certificate as presented in the hello, the
-- status, and the encrypted summary blob (TM1). `conn_id` tells a broker's
-- connections of one session key apart (a reconnect replaces the row).
CREATE TABLE sessions_online (
    mesh_id         BYTEA NOT NULL,
    session         BYTEA NOT NULL,
    member          BYTEA NOT NULL,
    broker_id       TEXT NOT NULL,
    conn_id         BIGINT NOT NULL,
    cert            TEXT NOT NULL,
    status          TEXT NOT NULL,
    peer_type       TEXT,
    summary         TEXT,
    connected_at_ms BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (mesh_id, session)
);
CREATE INDEX sessions_online_member ON sessions_online (mesh_id, member);
CREATE INDEX sessions_online_broker ON sessions_online (broker_id);
