-- The direct messages the gateway sent (`POST /api/v1/messages` to a
-- member or a session), in plaintext as the inbox keeps what this device
-- received: with the inbox's direct messages from the same peer they make
-- the conversation `GET /api/v1/conversations/{peer}/messages` lists.
-- `recipient` is the member key (hex) it went to, `target` the target as
-- sent (`member:<hex>`, `session:<hex>`), `sent_at` the envelope's time
-- (unix ms). A retried send (the same id) is kept once. The rows of a mesh
-- go when this device leaves it.

CREATE TABLE gateway_sent (
    mesh_id   TEXT NOT NULL,
    msg_id    TEXT NOT NULL,
    recipient TEXT NOT NULL,
    target    TEXT NOT NULL,
    body      BLOB NOT NULL,
    priority  TEXT NOT NULL,
    reply_to  TEXT,
    sent_at   INTEGER NOT NULL,
    PRIMARY KEY (mesh_id, msg_id)
) WITHOUT ROWID;
CREATE INDEX gateway_sent_peer ON gateway_sent (mesh_id, recipient, sent_at);
