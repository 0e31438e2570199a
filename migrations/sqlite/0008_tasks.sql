-- Tasks (issue 17 item 1, docs/protocol.md "Tasks"): a task is a
-- coordination object of kind 'task' (its title, body and tags sealed, as a
-- memory note's text is); what the broker arbitrates is kept beside it:
-- its version (1 when created, one more per act), its phase (0 open, 1
-- claimed, 2 done), who holds it (the claimant, or who completed it) and the
-- last act as its signer sent it (a sealed, signed object whose rev is the
-- version it made). An act is applied under the mesh's coord_heads row
-- lock, so of concurrent claims of one version exactly one wins.
ALTER TABLE coord_objects ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE coord_objects ADD COLUMN phase INTEGER NOT NULL DEFAULT 0;
ALTER TABLE coord_objects ADD COLUMN holder_member BLOB;
ALTER TABLE coord_objects ADD COLUMN act TEXT;
