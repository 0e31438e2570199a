-- Delivery evidence the recipient signs (docs/security.md §8.1), and
-- messages that expire unseen (send.ttl_ms).

-- A fan-out message's number within its target: 1, 2, 3, … per
-- (mesh, target) in commit order, with no gaps, so that a recipient's
-- watermark ("every message of #deploys numbered up to N, except these")
-- claims exactly what it holds. `target_seqs` is the counter; its row lock
-- orders concurrent writers (and replicas) of one target.
ALTER TABLE messages ADD COLUMN tseq INTEGER;
ALTER TABLE messages ADD COLUMN deadline_ms INTEGER;
CREATE INDEX messages_deadline ON messages (deadline_ms)
    WHERE deadline_ms IS NOT NULL AND envelope IS NOT NULL;
CREATE TABLE target_seqs (
    mesh_id BLOB NOT NULL,
    target  TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (mesh_id, target)
);

-- Signed receipts for one message: direct messages (delivered, shown,
-- answered) and fan-out messages (answered). State: 1 delivered, 2 shown,
-- 3 answered. `doc` is the receipt's JSON as the recipient signed it.
CREATE TABLE receipts (
    seq    INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    member BLOB NOT NULL,
    state  SMALLINT NOT NULL,
    at_ms  INTEGER NOT NULL,
    doc    TEXT NOT NULL,
    PRIMARY KEY (seq, member, state)
);

-- Fan-out evidence: one row per (member, target, state), never per
-- message. `upto` only moves up. State: 1 delivered, 2 shown.
CREATE TABLE watermarks (
    mesh_id BLOB NOT NULL,
    member  BLOB NOT NULL,
    target  TEXT NOT NULL,
    state   SMALLINT NOT NULL,
    upto    INTEGER NOT NULL,
    at_ms   INTEGER NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (mesh_id, member, target, state)
);
CREATE INDEX watermarks_target ON watermarks (mesh_id, target, upto);
