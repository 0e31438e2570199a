-- Scheduled messages (issue 17 item 5, docs/protocol.md `send.deliver_at_ms`).
-- `outbox.deliver_at_ms` is when a message is to be delivered (unix ms, by
-- the broker's clock, as sent): a resend after a lost connection carries
-- it again, so the broker still holds the message until then. Two new
-- outbox states: `scheduled` (the broker holds it: it is not resent) and
-- `cancelled` (`schedule cancel` dropped it before it was sent).

ALTER TABLE outbox ADD COLUMN deliver_at_ms INTEGER;
