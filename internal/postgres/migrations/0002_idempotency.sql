-- Idempotency keys of creates: the first answer to a key, kept for a while
-- so that a retry gets it again instead of a new phone or a 409.

CREATE TABLE idempotency_keys (
  -- The key within its tenant (and account, for an account-specific token).
  scope TEXT PRIMARY KEY,
  -- SHA-256 of the request (path, x-customer-id, body): a key reused for
  -- another request is refused.
  fingerprint BYTEA NOT NULL,
  -- The id handed to the create. Ids are never reused, so the answer was a
  -- 200 if this phone exists and a 409 (duplicate) if it does not.
  phone_id BIGINT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
