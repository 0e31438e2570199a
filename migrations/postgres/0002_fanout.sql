-- Topic, group and broadcast messages: stored once, with the log length at
-- which the broker accepted them (`at_len`), from which every recipient is
-- worked out "as of send time". NULL for direct messages.
ALTER TABLE messages ADD COLUMN at_len BIGINT;
CREATE INDEX messages_fanout ON messages (mesh_id, target, seq) WHERE at_len IS NOT NULL;

-- A recipient's acknowledgement of one fan-out message: 1 delivered, 2 read.
-- Written when the recipient acks, never when the message is sent.
CREATE TABLE fanout_receipts (
    mesh_id       BYTEA NOT NULL,
    member        BYTEA NOT NULL,
    seq           BIGINT NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    state         SMALLINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (mesh_id, member, seq)
);
CREATE INDEX fanout_receipts_seq ON fanout_receipts (seq);

-- Per (member, target): every fan-out message of that target with a seq at
-- or below `seq` is acked by, or not addressed to, the member. Drains start
-- above it.
CREATE TABLE fanout_cursors (
    mesh_id BYTEA NOT NULL,
    member  BYTEA NOT NULL,
    target  TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (mesh_id, member, target)
);
