-- Team memory (issue 17, docs/protocol.md "Coordination"): coordination
-- objects the broker stores but cannot read. Each row keeps the sealed,
-- signed CoordObject as its author sent it (JSON, ciphertext in base64) and
-- the facts the broker checks or orders by; nothing the broker can read of
-- its contents. A forgotten object keeps its row without `object` (a
-- tombstone in the feed, and its id is never stored again).
--
-- `coord_heads` is each mesh's feed counter: every put or forget takes the
-- next `cseq` from it in its own transaction, whose row lock (on Postgres)
-- serializes a mesh's coordination writes across replicas, so cseq order is
-- commit order.
CREATE TABLE coord_heads (
    mesh_id BYTEA PRIMARY KEY,
    cseq    BIGINT NOT NULL
);

CREATE TABLE coord_objects (
    mesh_id       BYTEA NOT NULL,
    kind          TEXT NOT NULL,
    id            BYTEA NOT NULL,
    author_member BYTEA NOT NULL,
    epoch         BIGINT NOT NULL,
    cseq          BIGINT NOT NULL,
    object        TEXT,
    size          BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (mesh_id, kind, id)
);
CREATE INDEX coord_objects_feed ON coord_objects (mesh_id, kind, cseq);
-- The per-member quota counts an author's stored objects.
CREATE INDEX coord_objects_author ON coord_objects (mesh_id, author_member) WHERE object IS NOT NULL;

-- The coordination key ring: per epoch and signer, the first link stands
-- (the previous epoch's coordination key sealed under this one's; readers
-- choose whose to trust).
CREATE TABLE coord_ring (
    mesh_id       BYTEA NOT NULL,
    scope         TEXT NOT NULL,
    epoch         BIGINT NOT NULL,
    signer_member BYTEA NOT NULL,
    link          TEXT NOT NULL,
    PRIMARY KEY (mesh_id, scope, epoch, signer_member)
);
