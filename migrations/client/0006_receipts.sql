-- Signed delivery receipts (issue 15, docs/security.md §8.1). `read_at` /
-- `read_acked` now mean "shown" and "the signed `shown` receipt was sent".
-- `shown_via` is how it was shown (`inbox`, `mcp_tool`, `channel`, `hook`,
-- `gateway`, …; NULL for rows shown before this migration: `inbox`).
-- `answered_reply` is the id (hex) of this device's first reply to the
-- message once the broker accepted it, and `answered_sent` whether its
-- signed `answered` receipt was sent.
-- `tseq` is a fan-out message's number within its target (the broker's
-- 1, 2, 3, … per `#topic`, `@group`, `*`), on the inbox for what this
-- device received and on the outbox for what it posted (its own posts are
-- never delivered back to it): a target's watermarks are read off these
-- two, so they need no table of their own.

ALTER TABLE inbox ADD COLUMN shown_via TEXT;
ALTER TABLE inbox ADD COLUMN answered_reply TEXT;
ALTER TABLE inbox ADD COLUMN answered_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN tseq INTEGER;
ALTER TABLE outbox ADD COLUMN tseq INTEGER;
CREATE INDEX inbox_target_tseq ON inbox (mesh_id, target, tseq) WHERE tseq IS NOT NULL;
CREATE INDEX outbox_target_tseq ON outbox (mesh_id, target, tseq) WHERE tseq IS NOT NULL;
-- Direct messages shown, and messages answered, whose signed receipt is
-- not sent yet. A fan-out row owes no receipt of its own once shown (its
-- target's shown watermark covers it), so it is marked sent at once.
UPDATE inbox SET read_acked = 1 WHERE read_at IS NOT NULL
    AND target NOT LIKE 'member:%' AND target NOT LIKE 'session:%';
CREATE INDEX inbox_shown_due ON inbox (mesh_id, id)
    WHERE read_at IS NOT NULL AND read_acked = 0;
CREATE INDEX inbox_answered_due ON inbox (mesh_id, id)
    WHERE answered_reply IS NOT NULL AND answered_sent = 0;
