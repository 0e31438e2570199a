-- Replicas (see migrations/postgres/0004_replicas.sql): several brokers on
-- one Postgres. SQLite serves one broker on one machine, so nothing writes
-- these tables here; they exist so that both backends keep the same schema.
CREATE TABLE brokers (
    broker_id       TEXT PRIMARY KEY,
    started_at_ms   INTEGER NOT NULL,
    heartbeat_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sessions_online (
    mesh_id         BLOB NOT NULL,
    session         BLOB NOT NULL,
    member          BLOB NOT NULL,
    broker_id       TEXT NOT NULL,
    conn_id         INTEGER NOT NULL,
    cert            TEXT NOT NULL,
    status          TEXT NOT NULL,
    peer_type       TEXT,
    summary         TEXT,
    connected_at_ms INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (mesh_id, session)
) WITHOUT ROWID;
CREATE INDEX sessions_online_member ON sessions_online (mesh_id, member);
CREATE INDEX sessions_online_broker ON sessions_online (broker_id);
