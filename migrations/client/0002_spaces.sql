-- Topics, groups and broadcast on this device: whether an inbound fan-out
-- message mentions this member (`@name`), unread counts per target
-- (`topic list`), and finding a message by id (`topic history --before`).

ALTER TABLE inbox ADD COLUMN mentions_me INTEGER NOT NULL DEFAULT 0;
CREATE INDEX inbox_target_unread ON inbox (mesh_id, target, read_at);
CREATE INDEX inbox_msg_id ON inbox (mesh_id, msg_id);
