-- Tasks and shared state (issue 17 items 1 and 3, docs/protocol.md
-- "Tasks", "Shared state"): this device's copy of the mesh's coordination
-- feed for those kinds, as the broker sent it: per object, its sealed
-- object and (for a task) the last act on it (a claim, release or
-- completion), both as wire JSON. They are verified (signatures,
-- certificates, authors against the verified roster) and opened each time
-- they are read, so what is shown always follows this device's roster and
-- keys; nothing here is trusted because it is stored. `cseq` is the feed
-- position of the change this row reflects; the position applied so far is
-- in `coord_heads`, per kind.
CREATE TABLE coord_items (
    mesh_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    item_id TEXT NOT NULL,
    cseq    INTEGER NOT NULL,
    object  TEXT NOT NULL,
    act     TEXT,
    PRIMARY KEY (mesh_id, kind, item_id)
);
