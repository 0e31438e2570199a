-- Messages held for later (send.deliver_at_ms, docs/protocol.md §5
-- "Scheduled"): the sealed, signed envelope as the sender sent it, kept
-- until its time. At that time a writer transaction deletes the row and
-- stores the message (one transaction, so a replica that fires it, another
-- that fires it too and a cancel cannot both win), and from then on it is
-- an ordinary message. State: 0 held, 1 failed (its time came and it could
-- not be routed: `error` says why; kept for its sender until the retention
-- or a cancel). No column holds anything the broker can read of the body.
CREATE TABLE scheduled_messages (
    mesh_id       BYTEA NOT NULL,
    sender_member BYTEA NOT NULL,
    msg_id        BYTEA NOT NULL,
    target        TEXT NOT NULL,
    priority      SMALLINT NOT NULL,
    envelope      TEXT NOT NULL,
    size          BIGINT NOT NULL,
    ttl_ms        BIGINT,
    deliver_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    state         SMALLINT NOT NULL DEFAULT 0,
    error         TEXT,
    PRIMARY KEY (mesh_id, sender_member, msg_id)
);
CREATE INDEX scheduled_messages_due ON scheduled_messages (deliver_at_ms) WHERE state = 0;
