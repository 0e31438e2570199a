-- Tasks (issue 17 item 1, docs/protocol.md "Tasks"): this device's copy of
-- the mesh's task feed, as the broker sent it: per task, its sealed object
-- and the last act on it (a claim, release or completion), both as wire
-- JSON. They are verified (signatures, certificates, authors against the
-- verified roster) and opened each time they are read, so what is shown
-- always follows this device's roster and keys; nothing here is trusted
-- because it is stored. `cseq` is the feed position of the change this row
-- reflects; the position applied so far is in `coord_heads` (kind 'task').
CREATE TABLE coord_tasks (
    mesh_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    cseq    INTEGER NOT NULL,
    object  TEXT NOT NULL,
    act     TEXT,
    PRIMARY KEY (mesh_id, task_id)
);
