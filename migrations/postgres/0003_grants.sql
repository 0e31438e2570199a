-- Grants (TM7): each member's signed grant set, as the JSON document it
-- signed (`doc`), with its version (unix ms) so that an older set never
-- replaces a newer one. The broker verifies `doc` again when it loads it.
CREATE TABLE grants (
    mesh_id BYTEA NOT NULL,
    member  BYTEA NOT NULL,
    version BIGINT NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (mesh_id, member)
);
