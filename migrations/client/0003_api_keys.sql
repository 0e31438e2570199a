-- The gateway's API keys (`claudemesh apikey`). Only a SHA-256 of each
-- key's 256-bit secret is kept: the key itself is printed once, at
-- creation. `prefix` is the public half, which names the key in `apikey
-- list`, `apikey revoke` and the audit log.

CREATE TABLE api_keys (
    prefix       TEXT PRIMARY KEY,
    secret_hash  BLOB NOT NULL,
    label        TEXT NOT NULL,
    mesh_id      BLOB NOT NULL,
    caps         TEXT NOT NULL,
    topics       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
