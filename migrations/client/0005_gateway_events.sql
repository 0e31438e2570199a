-- The gateway's event journal: what `GET /api/v1/events` streams, each
-- event numbered once (`id` is the SSE event id) so a client that
-- reconnects with `Last-Event-ID` gets what it missed, once. A message
-- event names its inbox row (`inbox_id`) rather than copying the body:
-- the plaintext stays in one place. `topic` is the topic a message went
-- to (for keys scoped to topics). Rows older than a week go.

CREATE TABLE gateway_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    mesh_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    topic      TEXT,
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX gateway_events_mesh ON gateway_events (mesh_id, id);
CREATE INDEX gateway_events_created ON gateway_events (created_at);
