-- pgbench script: one group commit of the broker's row shape (see
-- migrations/postgres/0001_init.sql): :b messages with about 1.1 kB of
-- envelope text each, and one delivery row per message, in one transaction.
-- The Postgres ceiling the broker is compared with in docs/benchmarks.md.
--
--   createdb cmbench && psql -d cmbench -f migrations/postgres/0001_init.sql
--   pgbench -n -f crates/bench/pgbench/messages.sql -D b=256 -c 4 -j 4 -T 10 cmbench
--
-- Messages per second = tps * b.
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
SELECT count(*) FROM d;
COMMIT;
