-- File leases (issue 17 item 2): a mirrored lease's end, as the broker's
-- feed last said (renewals move it; it is the broker's word, not signed).
-- NULL for the other kinds.
ALTER TABLE coord_items ADD COLUMN expires_at_ms INTEGER;
