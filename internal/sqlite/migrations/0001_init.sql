-- Phones and their transactional outbox.

CREATE TABLE phones (
  -- AUTOINCREMENT: ids are never reused, not even the id of a deleted last row.
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant TEXT NOT NULL,
  account_id INTEGER NOT NULL,
  customer_id INTEGER,
  number TEXT NOT NULL,
  type TEXT NOT NULL,
  active INTEGER NOT NULL,
  area_code INTEGER,
  country_code INTEGER NOT NULL,
  extension TEXT,
  dup_key TEXT NOT NULL,
  -- Unix milliseconds, UTC.
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  version INTEGER NOT NULL
);

-- The duplicate rule: one active phone per key and account. Inactive phones
-- never conflict.
CREATE UNIQUE INDEX phones_active_dup_key ON phones (tenant, account_id, dup_key) WHERE active;

CREATE INDEX phones_account ON phones (tenant, account_id, id);

CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  domain TEXT NOT NULL,
  event_type TEXT NOT NULL,
  payload BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  sent_at INTEGER
);

-- Only unsent rows are indexed, so the relay's scan stays small however many
-- sent rows wait for pruning.
CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL;
