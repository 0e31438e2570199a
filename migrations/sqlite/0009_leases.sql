-- File leases (issue 17 item 2, docs/protocol.md "File leases"): a lease
-- is a coordination object of kind 'lease' (its repository, paths and
-- reason sealed); what the broker decides conflicts by is kept beside it:
-- the session that took it, whether it is exclusive (1) or shared (0), when
-- it ends (renewals move it), and its keyed path tags (hex, 32 digits
-- each, concatenated), which are HMAC-like hashes under the coordination
-- key: the broker compares them, it never learns a path. A take is checked
-- and granted under the mesh's coord_heads row lock, so of two overlapping
-- exclusive takes exactly one is granted.
ALTER TABLE coord_objects ADD COLUMN holder_session BLOB;
ALTER TABLE coord_objects ADD COLUMN exclusive INTEGER NOT NULL DEFAULT 0;
ALTER TABLE coord_objects ADD COLUMN expires_at_ms INTEGER;
ALTER TABLE coord_objects ADD COLUMN tags TEXT;
-- A take reads the mesh's live leases and those past their end.
CREATE INDEX coord_objects_leases ON coord_objects (mesh_id, expires_at_ms)
    WHERE kind = 'lease' AND object IS NOT NULL;
