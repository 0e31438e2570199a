-- Message expiry (issue 15, docs/protocol.md §5 "TTL"). `outbox.deadline_ms`
-- is when a message sent with a time to live expires (unix ms, this
-- device's clock: the original send time plus the TTL), so a resend
-- carries only what remains of it, and one after the deadline is not sent
-- but marked `expired` (a new outbox state). `inbox.deadline_ms` is the
-- deadline the broker stamped on a delivery: after it, a message not yet
-- shown is no longer presented as unread, nor marked shown.

ALTER TABLE outbox ADD COLUMN deadline_ms INTEGER;
ALTER TABLE inbox ADD COLUMN deadline_ms INTEGER;
