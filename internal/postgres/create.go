package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/groupcommit"
	"github.com/phonesd/phonesd/internal/phone"
)

// insertPhonesSQL writes a batch in one statement, run once the
// transaction holds its locks. It takes the transaction's time and draws
// the ids, in batch order, so that both follow commit order; claims the
// idempotency keys; inserts the phones whose key was claimed (or that have
// none); and inserts the events of the phones inserted, their payloads
// completed with the id and the time (see phone.Template). The ids come
// from the identity sequence of phones.id by the name PostgreSQL gives it
// (TestIdentitySequenceName), which is resolved once, when the statement
// is prepared: pg_get_serial_sequence would look it up in the catalogs for
// every row (3 % of the server's CPU in a profile under load).
//
// A key of the same scope blocks a claim unless it has expired, when it is
// replaced; a key used twice in the batch is claimed by its first create
// only (one INSERT cannot update a row twice). ON CONFLICT names the
// partial unique index, so a duplicate phone, also of an earlier phone of
// the same batch, is skipped rather than failing the batch. The events are
// inserted in id order, so their seqs follow it. It returns, for each
// creation in batch order, its id, the time, and whether its phone was
// stored and its key claimed.
const insertPhonesSQL = `WITH clock AS MATERIALIZED (
  SELECT at, ` + eventTimeSQL + ` AS stamp
  FROM (SELECT date_trunc('milliseconds', clock_timestamp()) AS at) AS c
), input AS MATERIALIZED (
  SELECT nextval('phones_id_seq') AS id, u.*
  FROM (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::boolean[],
      $7::integer[], $8::integer[], $9::text[], $10::text[], $11::bigint[],
      $12::text[], $13::bytea[], $14::timestamptz[],
      $15::uuid[], $16::text[], $17::text[], $18::bytea[], $19::bytea[], $20::bytea[], $21::text[])
      WITH ORDINALITY
      AS t(tenant, account_id, customer_id, number, type, active,
        area_code, country_code, extension, dup_key, version,
        scope, fingerprint, expires_at,
        event_id, domain, event_type, head, mid, tail, traceparent, ord)
    ORDER BY ord
  ) AS u
), claimed AS (
  INSERT INTO idempotency_keys (scope, fingerprint, phone_id, created_at, expires_at)
  SELECT DISTINCT ON (scope) scope, fingerprint, id, at, expires_at
  FROM input, clock WHERE scope IS NOT NULL ORDER BY scope, id
  ON CONFLICT (scope) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint, phone_id = EXCLUDED.phone_id,
    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
  WHERE idempotency_keys.expires_at <= EXCLUDED.created_at
  RETURNING phone_id
), inserted AS (
  INSERT INTO phones (
    id, tenant, account_id, customer_id, number, type, active,
    area_code, country_code, extension, dup_key, created_at, updated_at, version)
  OVERRIDING SYSTEM VALUE
  SELECT id, tenant, account_id, customer_id, number, type, active,
    area_code, country_code, extension, dup_key, at, at, version
  FROM input, clock
  WHERE scope IS NULL OR id IN (SELECT phone_id FROM claimed)
  ORDER BY id
  ON CONFLICT (tenant, account_id, dup_key) WHERE active DO NOTHING
  RETURNING id
), events AS (
  INSERT INTO outbox (event_id, domain, event_type, payload, created_at, traceparent)
  SELECT event_id, domain, event_type,
    head || convert_to(stamp, 'UTF8') || mid || convert_to(id::text, 'UTF8') || tail,
    at, traceparent
  FROM input JOIN inserted USING (id), clock
  ORDER BY id
)
SELECT id, at, id IN (SELECT id FROM inserted), id IN (SELECT phone_id FROM claimed)
FROM input, clock
ORDER BY ord`

// CreatePhone stores what c.Write returns for a new id and the
// transaction's time: the phone and its Phone created event. Calls arriving
// together share one transaction and its commit (see CreatePhones). It
// returns phone.ErrDuplicate when c's phone is active and its account
// already has an active phone with its duplicate key, or the context's
// error when ctx ends first. c.EventID must be a UUID.
func (db *DB) CreatePhone(ctx context.Context, c phone.Creation) (phone.Phone, error) {
	o, err := db.creates.Do(ctx, c)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("create phone: %w", err)
	}
	return o.Phone, o.Err
}

// CreatePhones stores what each creation of cs writes (its phone and its
// Phone created event) and its idempotency key, in one transaction, in
// order: a later creation that duplicates an earlier one of the batch is
// refused like any duplicate. It returns each creation's outcome, or an
// error: wrapped by groupcommit.NotCommitted when the transaction certainly
// stored nothing, of unknown outcome otherwise (the connection failed once
// the batch was sent, so the reply to its COMMIT was lost).
//
// It costs one round trip: BEGIN, the locks of the batch's accounts, the
// insert statement and COMMIT go out together. The locks come before any
// write, so the transaction's id, assigned at its first write, is larger
// than that of every earlier transaction of its accounts: the relay
// delivers by transaction id (see readEventsSQL), so each account's
// events go out in commit order, while batches of other accounts commit
// side by side. The ids and the time are chosen by the insert statement,
// after the locks, so that they too follow commit order per account; the
// events, which carry both, are completed there from templates (see
// phone.Template).
func (db *DB) CreatePhones(ctx context.Context, cs []phone.Creation) ([]phone.Outcome, error) {
	var cols createColumns
	writes := make([]phone.Write, len(cs))
	accounts := make([]account, len(cs))
	for i, c := range cs {
		t, err := c.Template()
		if err != nil {
			return nil, groupcommit.NotCommitted(fmt.Errorf("create phones: %w", err))
		}
		writes[i] = t.Write
		accounts[i] = account{t.Write.Phone.Tenant, t.Write.Phone.AccountID}
		cols.add(t, c.Idempotency)
	}

	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, groupcommit.NotCommitted(fmt.Errorf("create phones: %w", err))
	}
	// A connection released inside a failed transaction is closed by the
	// pool, which rolls the transaction back.
	defer conn.Release()

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(lockAccountsSQL, accountLockClass, accountLocks(accounts))
	b.Queue(insertPhonesSQL, cols.args()...)
	b.Queue("COMMIT")
	type stored struct {
		id                int64
		at                time.Time
		inserted, claimed bool
	}
	got := make([]stored, 0, len(cs))
	committed := false
	err = sendBatch(ctx, conn.Conn(), b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("lock accounts: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("insert phones: %w", err)
		}
		var s stored
		if _, err := pgx.ForEachRow(rows, []any{&s.id, &s.at, &s.inserted, &s.claimed}, func() error {
			got = append(got, s)
			return nil
		}); err != nil {
			return fmt.Errorf("insert phones: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		committed = true
		return nil
	})
	switch {
	case committed:
		// The server acknowledged the COMMIT: whatever failed after it,
		// such as reading the end of the batch, changes nothing stored.
	case err != nil && rolledBack(err):
		return nil, groupcommit.NotCommitted(fmt.Errorf("create phones: %w", err))
	case err != nil:
		// The COMMIT went out with the rows, and its answer was lost: the
		// batch may be stored, so no create of it may be told otherwise.
		return nil, fmt.Errorf("create phones: outcome unknown: %w", err)
	}
	if len(got) != len(cs) {
		// Committed, yet not as asked: no create may be told it failed.
		return nil, fmt.Errorf("create phones: outcome unknown: %d rows returned for %d creates", len(got), len(cs))
	}

	outs := make([]phone.Outcome, len(cs))
	for i, s := range got {
		switch {
		case cs[i].Idempotency != nil && !s.claimed:
			outs[i].Err = fmt.Errorf("claim idempotency key: %w", phone.ErrKeyTaken)
		case s.inserted:
			p := writes[i].Phone
			at := s.at.UTC()
			p.ID, p.CreatedAt, p.UpdatedAt = s.id, at, at
			outs[i].Phone = p
		default:
			outs[i].Err = fmt.Errorf("insert phone: %w", phone.ErrDuplicate)
		}
	}
	return outs, nil
}

// createColumns gathers a batch of creates as insertPhonesSQL takes it: one
// array per column.
type createColumns struct {
	tenants, numbers, types, keys []string
	accounts, versions            []int64
	customers                     []*int64
	actives                       []bool
	areas                         []*int32
	countries                     []int32
	extensions                    []*string

	scopes       []*string
	fingerprints [][]byte
	expiries     []*time.Time

	eventIDs, domains, eventTypes []string
	heads, mids, tails            [][]byte
	traceParents                  []*string
}

// add appends the create that t writes, with its event as a template, and its
// idempotency key k (nil for none).
func (c *createColumns) add(t phone.Template, k *phone.Idempotency) {
	w := t.Write
	p, ev := w.Phone, w.Event
	c.tenants = append(c.tenants, p.Tenant)
	c.accounts = append(c.accounts, p.AccountID)
	c.customers = append(c.customers, p.CustomerID)
	c.numbers = append(c.numbers, p.Number)
	c.types = append(c.types, string(p.Type))
	c.actives = append(c.actives, p.Active)
	c.areas = append(c.areas, p.AreaCode)
	c.countries = append(c.countries, p.CountryCode)
	c.extensions = append(c.extensions, p.Extension)
	c.keys = append(c.keys, w.Key)
	c.versions = append(c.versions, p.Version)
	if k != nil {
		c.scopes, c.fingerprints, c.expiries = append(c.scopes, &k.Scope), append(c.fingerprints, k.Fingerprint), append(c.expiries, &k.ExpiresAt)
	} else {
		c.scopes, c.fingerprints, c.expiries = append(c.scopes, nil), append(c.fingerprints, nil), append(c.expiries, nil)
	}
	c.eventIDs = append(c.eventIDs, ev.ID)
	c.domains = append(c.domains, ev.Domain)
	c.eventTypes = append(c.eventTypes, ev.Type)
	c.heads = append(c.heads, t.Head)
	c.mids = append(c.mids, t.Mid)
	c.tails = append(c.tails, t.Tail)
	var traceParent *string
	if ev.TraceParent != "" {
		traceParent = &ev.TraceParent
	}
	c.traceParents = append(c.traceParents, traceParent)
}

// args returns the columns in insertPhonesSQL's order of parameters.
func (c *createColumns) args() []any {
	return []any{
		c.tenants, c.accounts, c.customers, c.numbers, c.types, c.actives,
		c.areas, c.countries, c.extensions, c.keys, c.versions,
		c.scopes, c.fingerprints, c.expiries,
		c.eventIDs, c.domains, c.eventTypes, c.heads, c.mids, c.tails, c.traceParents,
	}
}
