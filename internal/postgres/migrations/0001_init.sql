-- Phones and their transactional outbox.
--
-- The CHECK constraints repeat the bounds that phone.Draft.Validate enforces:
-- a second line of defence, so that a bug or a hand-written statement cannot
-- store a phone the API could never have accepted. They are cheap next to
-- the unique index every insert already maintains.

CREATE TABLE phones (
  -- ALWAYS: ids come from the sequence only, and are never reused.
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant TEXT NOT NULL,
  account_id BIGINT NOT NULL,
  customer_id BIGINT,
  number TEXT NOT NULL
    CONSTRAINT phones_number_valid
    CHECK (char_length(number) <= 15 AND number ~ '^\+?[0-9 ().-]*[0-9][0-9 ().-]*$'),
  type TEXT NOT NULL
    CONSTRAINT phones_type_valid CHECK (type IN ('RESIDENTIAL', 'COMMERCIAL', 'MOBILE')),
  active BOOLEAN NOT NULL,
  -- INTEGER already caps the area code at 2147483647, as the contract does.
  area_code INTEGER CONSTRAINT phones_area_code_valid CHECK (area_code >= 0),
  country_code INTEGER NOT NULL
    CONSTRAINT phones_country_code_valid CHECK (country_code BETWEEN 0 AND 99999),
  extension TEXT CONSTRAINT phones_extension_valid CHECK (char_length(extension) <= 10),
  -- NOT NULL: the unique index below treats NULLs as distinct, so a NULL key
  -- would let any number of duplicates through.
  dup_key TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL,
  version BIGINT NOT NULL CONSTRAINT phones_version_valid CHECK (version >= 1)
);

-- The duplicate rule: one active phone per key and account. Inactive phones
-- never conflict. The store maps a violation of this index, by its name, to
-- phone.ErrDuplicate.
CREATE UNIQUE INDEX phones_active_dup_key ON phones (tenant, account_id, dup_key) WHERE active;

CREATE INDEX phones_account ON phones (tenant, account_id, id);

CREATE TABLE outbox (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id UUID NOT NULL UNIQUE,
  domain TEXT NOT NULL,
  event_type TEXT NOT NULL,
  -- The envelope exactly as sinks deliver it: jsonb would reorder its keys
  -- and json would still be re-parsed on every insert.
  payload BYTEA NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  sent_at TIMESTAMPTZ
);

-- Only unsent rows are indexed, so the relay's scan stays small however many
-- sent rows wait for pruning.
CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL;
