-- pgbench script: as messages.sql, and then the same :b deliveries marked
-- delivered in the same transaction, by primary key range (the broker
-- applies acks in a later group commit). Each pgbench client has its own
-- recipient, so clients never touch each other's rows. Run it like
-- messages.sql:
--
--   pgbench -n -f crates/bench/pgbench/messages_acked.sql -D b=256 -c 4 -j 4 -T 10 cmbench
BEGIN;
WITH m AS (
  INSERT INTO messages (mesh_id, sender_member, msg_id, target, priority, envelope, size,
                        created_at_ms, expires_at_ms)
  SELECT '\x0101010101010101010101010101010101010101010101010101010101010101'::bytea,
         decode(md5(:client_id::text || 'sender'), 'hex') || decode(md5(:client_id::text), 'hex'),
         decode(md5(random()::text || i::text), 'hex'),
         'member:f6a49e989bcbdda88f744b0abfcaf9bef5e37eb4f9c8f1d885528a7166e1bbe5', 1,
         repeat('x', 1100), 1100, 0, 0
  FROM generate_series(1, :b) AS i
  RETURNING seq, mesh_id),
d AS (
  INSERT INTO deliveries (seq, mesh_id, recipient, state, updated_at_ms)
  SELECT seq, mesh_id, decode(md5(:client_id::text || 'recipient'), 'hex') || decode(md5(:client_id::text), 'hex'), 0, 0
  FROM m
  RETURNING seq)
SELECT min(seq) AS lo, max(seq) AS hi FROM d \gset
UPDATE deliveries SET state = 1, updated_at_ms = 1
WHERE seq BETWEEN :lo AND :hi
  AND recipient = decode(md5(:client_id::text || 'recipient'), 'hex') || decode(md5(:client_id::text), 'hex')
  AND state < 1;
COMMIT;
