-- The web app's sign-in links and sessions (`claudemesh serve open`,
-- `claudemesh serve sessions`). As with API keys, only a SHA-256 of each
-- 256-bit secret is kept: a sign-in link is shown once and works once, a
-- session's secret lives only in the browser's HttpOnly cookie.

CREATE TABLE web_signins (
    secret_hash BLOB PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE web_sessions (
    id           TEXT PRIMARY KEY,
    secret_hash  BLOB NOT NULL,
    csrf         TEXT NOT NULL,
    agent        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    ended_at     INTEGER
);
