-- The gateway's idempotency keys: a POST that carries `Idempotency-Key`
-- gets one message id for that key (per API key), so a retry resends the
-- same message (the outbox and the broker deduplicate it by id) instead
-- of sending it twice. `request_hash` is a SHA-256 of what was asked; the
-- same key with another request is refused. Rows older than a day go.

CREATE TABLE idempotency_keys (
    api_key      TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    message_id   BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (api_key, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
