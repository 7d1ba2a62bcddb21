package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phonesd/phonesd/internal/groupcommit"
	"github.com/phonesd/phonesd/internal/phone"
)

// phoneColumns are the columns scanPhone reads, in its order.
const phoneColumns = `id, tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, created_at, updated_at, version`

const (
	lockOutboxOrderSQL = `SELECT pg_advisory_xact_lock($1)`

	// allocPhoneIDsSQL draws $1 ids from the phones' identity sequence.
	allocPhoneIDsSQL = `SELECT nextval(pg_get_serial_sequence('phones', 'id')) FROM generate_series(1, $1)`

	// insertPhonesSQL writes a batch in one statement: it claims the
	// idempotency keys, inserts the phones whose key was claimed (or that
	// have none), and the events of the phones inserted. A key of the same
	// scope blocks a claim unless it has expired, when it is replaced; a
	// key used twice in the batch is claimed by its first create only (one
	// INSERT cannot update a row twice). ON CONFLICT names the partial
	// unique index, so a duplicate phone, also of an earlier phone of the
	// same batch, is skipped rather than failing the batch. The ids come
	// from allocPhoneIDsSQL, in batch order, and the events are inserted in
	// that order, so their seqs follow it. It returns the ids of the phones
	// stored (true) and of the keys claimed (false).
	insertPhonesSQL = `WITH input AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
    $7::boolean[], $8::integer[], $9::integer[], $10::text[], $11::text[],
    $17::text[], $18::bytea[], $19::timestamptz[], $21::timestamptz[], $22::timestamptz[], $23::bigint[])
    AS t(id, tenant, account_id, customer_id, number, type, active, area_code, country_code, extension, dup_key,
      scope, fingerprint, expires_at, created_at, updated_at, version)
), claimed AS (
  INSERT INTO idempotency_keys (scope, fingerprint, phone_id, created_at, expires_at)
  SELECT DISTINCT ON (scope) scope, fingerprint, id, $12, expires_at
  FROM input WHERE scope IS NOT NULL ORDER BY scope, id
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
    area_code, country_code, extension, dup_key, created_at, updated_at, version
  FROM input
  WHERE scope IS NULL OR id IN (SELECT phone_id FROM claimed)
  ORDER BY id
  ON CONFLICT (tenant, account_id, dup_key) WHERE active DO NOTHING
  RETURNING id
), events AS (
  INSERT INTO outbox (event_id, domain, event_type, payload, created_at, traceparent)
  SELECT e.event_id, e.domain, e.event_type, e.payload, e.created_at, e.traceparent
  FROM unnest($1::bigint[], $13::uuid[], $14::text[], $15::text[], $16::bytea[], $24::timestamptz[], $20::text[])
    AS e(id, event_id, domain, event_type, payload, created_at, traceparent)
  JOIN inserted USING (id)
  ORDER BY e.id
)
SELECT id, true FROM inserted
UNION ALL
SELECT phone_id, false FROM claimed`

	insertEventSQL = `INSERT INTO outbox (event_id, domain, event_type, payload, created_at, traceparent)
VALUES ($1, $2, $3, $4, $5, $6)`

	selectPhoneSQL = `SELECT ` + phoneColumns + `
FROM phones
WHERE id = $1 AND tenant = $2 AND account_id = $3`

	lockPhoneSQL = `SELECT ` + phoneColumns + `
FROM phones
WHERE id = $1 AND tenant = $2 AND account_id = $3
FOR UPDATE`

	// listPhonesSQL walks the phones_account index from $3 on; a NULL
	// filter ($4 active, $5 type) lets every phone through.
	listPhonesSQL = `SELECT ` + phoneColumns + `
FROM phones
WHERE tenant = $1 AND account_id = $2 AND id > $3
  AND ($4::boolean IS NULL OR active = $4)
  AND ($5::text IS NULL OR type = $5)
ORDER BY id
LIMIT $6`

	// updatePhoneSQL names the version it read, so that it can never
	// overwrite a change it did not see.
	updatePhoneSQL = `UPDATE phones SET
  number = $1, type = $2, active = $3, area_code = $4, country_code = $5,
  extension = $6, dup_key = $7, updated_at = $8, version = $9
WHERE id = $10 AND version = $11`
)

// uniqueViolation is PostgreSQL's SQLSTATE for a unique index violation.
const uniqueViolation = "23505"

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
// Phone created event) and its idempotency key, in one transaction, in order: a later creation that duplicates an earlier one
// of the batch is refused like any duplicate. It returns each creation's
// outcome, or an error: wrapped by groupcommit.NotCommitted when the
// transaction certainly stored nothing, of unknown outcome otherwise (the
// reply to its COMMIT was lost).
//
// It costs two round trips: one that begins, takes the outbox order lock and
// allocates the ids, and one that writes every phone and event and commits.
// The events, which c.Write builds, carry their phone's id, so the ids
// must be known before the write; allocating them under the lock keeps ids,
// outbox order and creation times in commit order across replicas.
func (db *DB) CreatePhones(ctx context.Context, cs []phone.Creation) ([]phone.Outcome, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, groupcommit.NotCommitted(fmt.Errorf("create phones: %w", err))
	}
	// A connection released inside a failed transaction is closed by the
	// pool, which rolls the transaction back.
	defer conn.Release()

	begin := &pgx.Batch{}
	begin.Queue("BEGIN")
	begin.Queue(lockOutboxOrderSQL, outboxOrderLockKey)
	begin.Queue(allocPhoneIDsSQL, len(cs))
	ids := make([]int64, 0, len(cs))
	if err := sendBatch(ctx, conn.Conn(), begin, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("lock outbox order: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("allocate ids: %w", err)
		}
		ids, err = pgx.AppendRows(ids, rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("allocate ids: %w", err)
		}
		return nil
	}); err != nil {
		// No COMMIT was sent: the transaction ends with its connection.
		return nil, groupcommit.NotCommitted(fmt.Errorf("create phones: %w", err))
	}

	// The transaction's time, taken once the lock is held.
	now := time.Now().UTC().Truncate(time.Millisecond)
	n := len(cs)
	var (
		tenants, numbers, types, keys = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		accounts                      = make([]int64, n)
		customers                     = make([]*int64, n)
		actives                       = make([]bool, n)
		areas                         = make([]*int32, n)
		countries                     = make([]int32, n)
		extensions                    = make([]*string, n)
		createdAts, updatedAts        = make([]time.Time, n), make([]time.Time, n)
		versions                      = make([]int64, n)
		eventIDs, eventTypes          = make([]string, n), make([]string, n)
		eventDomains                  = make([]string, n)
		payloads                      = make([][]byte, n)
		eventTimes                    = make([]time.Time, n)
		traceParents                  = make([]*string, n)
		phones                        = make([]phone.Phone, n)
		scopes                        = make([]*string, n)
		fingerprints                  = make([][]byte, n)
		expiries                      = make([]*time.Time, n)
	)
	for i, c := range cs {
		w, err := c.Write(ids[i], now)
		if err != nil {
			return nil, groupcommit.NotCommitted(err)
		}
		p, ev := w.Phone, w.Event
		phones[i] = p
		tenants[i], accounts[i], customers[i], numbers[i] = p.Tenant, p.AccountID, p.CustomerID, p.Number
		types[i], actives[i], areas[i], countries[i] = string(p.Type), p.Active, p.AreaCode, p.CountryCode
		extensions[i], keys[i] = p.Extension, w.Key
		createdAts[i], updatedAts[i], versions[i] = p.CreatedAt, p.UpdatedAt, p.Version
		eventIDs[i], eventDomains[i], eventTypes[i], payloads[i], eventTimes[i] = ev.ID, ev.Domain, ev.Type, ev.Payload, ev.CreatedAt
		if ev.TraceParent != "" {
			traceParents[i] = &ev.TraceParent
		}
		if k := c.Idempotency; k != nil {
			scopes[i], fingerprints[i], expiries[i] = &k.Scope, k.Fingerprint, &k.ExpiresAt
		}
	}
	write := &pgx.Batch{}
	write.Queue(insertPhonesSQL, ids, tenants, accounts, customers, numbers, types, actives,
		areas, countries, extensions, keys, now, eventIDs, eventDomains, eventTypes, payloads,
		scopes, fingerprints, expiries, traceParents, createdAts, updatedAts, versions, eventTimes)
	write.Queue("COMMIT")
	inserted, claimed := make(map[int64]bool, n), make(map[int64]bool)
	committed := false
	err = sendBatch(ctx, conn.Conn(), write, func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("insert phones: %w", err)
		}
		var (
			id      int64
			isPhone bool
		)
		if _, err := pgx.ForEachRow(rows, []any{&id, &isPhone}, func() error {
			if isPhone {
				inserted[id] = true
			} else {
				claimed[id] = true
			}
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

	outs := make([]phone.Outcome, n)
	for i, p := range phones {
		switch {
		case cs[i].Idempotency != nil && !claimed[p.ID]:
			outs[i].Err = fmt.Errorf("claim idempotency key: %w", phone.ErrKeyTaken)
		case inserted[p.ID]:
			outs[i].Phone = p
		default:
			outs[i].Err = fmt.Errorf("insert phone: %w", phone.ErrDuplicate)
		}
	}
	return outs, nil
}

// rolledBack reports whether err, the failure of a batch that ends with
// COMMIT, proves the transaction was not committed: the server reported an
// error (severity ERROR aborts the transaction, so the COMMIT behind it is
// skipped or itself refused), or pgx sent nothing at all. A FATAL error does
// not prove it: the server may end a session that has already committed,
// for instance while it waits for a synchronous standby. Nor does a broken
// connection once the batch was written, nor a timeout.
func rolledBack(err error) bool {
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	// Severity may be translated to the server's language; the
	// unlocalized field, sent since PostgreSQL 9.6, is not.
	return cmp.Or(pgErr.SeverityUnlocalized, pgErr.Severity) == "ERROR"
}

// sendBatch sends b in one round trip and reads its results with read.
func sendBatch(ctx context.Context, conn *pgx.Conn, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	br := conn.SendBatch(ctx, b)
	err := read(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// insertEvent appends ev to the outbox inside tx, which holds
// outboxOrderLockKey.
func insertEvent(ctx context.Context, tx pgx.Tx, ev phone.Event) error {
	var traceParent *string
	if ev.TraceParent != "" {
		traceParent = &ev.TraceParent
	}
	_, err := tx.Exec(ctx, insertEventSQL, ev.ID, ev.Domain, ev.Type, ev.Payload, ev.CreatedAt, traceParent)
	if err != nil {
		return fmt.Errorf("insert %s event: %w", ev.Type, err)
	}
	return nil
}

// isDuplicate reports whether err violates the duplicate rule's index. The
// index name tells it apart from other unique violations, such as a reused
// event id, which are bugs, not duplicates.
func isDuplicate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == uniqueViolation && pgErr.ConstraintName == "phones_active_dup_key"
}

// Phone returns the phone id of the account of tenant. It returns
// phone.ErrNotFound when there is none, so another tenant's or account's
// phone is as absent as a missing one.
func (db *DB) Phone(ctx context.Context, tenant string, account, id int64) (phone.Phone, error) {
	p, err := scanPhone(db.pool.QueryRow(ctx, selectPhoneSQL, id, tenant, account))
	if errors.Is(err, pgx.ErrNoRows) {
		return phone.Phone{}, fmt.Errorf("select phone %d: %w", id, phone.ErrNotFound)
	}
	if err != nil {
		return phone.Phone{}, fmt.Errorf("select phone %d: %w", id, err)
	}
	return p, nil
}

// ListPhones returns up to q.Limit phones of q's account with ids above
// q.AfterID that pass q's filters, in id order; none is an empty slice. It
// returns an error when q.Limit is not positive.
func (db *DB) ListPhones(ctx context.Context, q phone.ListQuery) ([]phone.Phone, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("list phones: limit %d is not positive", q.Limit)
	}
	var typ *string
	if q.Type != nil {
		typ = new(string(*q.Type))
	}
	rows, err := db.pool.Query(ctx, listPhonesSQL,
		q.Tenant, q.AccountID, q.AfterID, q.Active, typ, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("list phones: %w", err)
	}
	defer rows.Close()

	phones := []phone.Phone{}
	for rows.Next() {
		p, err := scanPhone(rows)
		if err != nil {
			return nil, fmt.Errorf("list phones: %w", err)
		}
		phones = append(phones, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list phones: %w", err)
	}
	return phones, nil
}

// UpdatePhone locks the phone of c and calls c.Apply with it and the
// transaction's time; when Apply reports a change, it stores the Write
// Apply returned, its phone's state and its event, in one transaction. The
// update names the id and version it locked, so it changes that row only.
// It returns the phone as stored afterwards, phone.ErrNotFound,
// phone.ErrDuplicate when the new state is active and its account already
// has another active phone with its duplicate key, Apply's error, or the
// context's error; on error it stores nothing. c.Apply runs while the
// outbox order lock is held.
func (db *DB) UpdatePhone(ctx context.Context, c phone.Change) (phone.Phone, error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("begin update phone: %w", err)
	}
	defer tx.Rollback(ctx)

	// The outbox order lock comes before the row lock, as in every
	// transaction that may append to the outbox: taken after it, it could
	// deadlock. Another update holding the outbox lock would wait for this
	// row while this transaction waited for its lock; and a create holding
	// the outbox lock, inserting the duplicate key this transaction has just
	// written to the duplicate rule's index, would wait on that entry for
	// this transaction to end. See CreatePhone for why the lock exists.
	if _, err := tx.Exec(ctx, lockOutboxOrderSQL, outboxOrderLockKey); err != nil {
		return phone.Phone{}, fmt.Errorf("lock outbox order: %w", err)
	}
	cur, err := scanPhone(tx.QueryRow(ctx, lockPhoneSQL, c.ID, c.Tenant, c.AccountID))
	if errors.Is(err, pgx.ErrNoRows) {
		return phone.Phone{}, fmt.Errorf("lock phone %d: %w", c.ID, phone.ErrNotFound)
	}
	if err != nil {
		return phone.Phone{}, fmt.Errorf("lock phone %d: %w", c.ID, err)
	}
	// The transaction's time, taken once the locks are held, so that
	// update times follow commit order.
	now := time.Now().UTC().Truncate(time.Millisecond)
	w, changed, err := c.Apply(cur, now)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("change phone %d: %w", c.ID, err)
	}
	if !changed {
		return cur, nil
	}
	next := w.Phone
	tag, err := tx.Exec(ctx, updatePhoneSQL,
		next.Number, string(next.Type), next.Active, next.AreaCode, next.CountryCode,
		next.Extension, w.Key, next.UpdatedAt, next.Version,
		cur.ID, cur.Version,
	)
	if err != nil {
		if isDuplicate(err) {
			return phone.Phone{}, fmt.Errorf("update phone %d: %w", c.ID, phone.ErrDuplicate)
		}
		return phone.Phone{}, fmt.Errorf("update phone %d: %w", c.ID, err)
	}
	if tag.RowsAffected() != 1 {
		return phone.Phone{}, fmt.Errorf("update phone %d: version %d is no longer stored", c.ID, cur.Version)
	}

	if err := insertEvent(ctx, tx, w.Event); err != nil {
		return phone.Phone{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return phone.Phone{}, fmt.Errorf("commit update phone %d: %w", c.ID, err)
	}
	return next, nil
}

// scanPhone reads one row of phoneColumns.
func scanPhone(row pgx.Row) (phone.Phone, error) {
	var (
		p   phone.Phone
		typ string
	)
	err := row.Scan(
		&p.ID, &p.Tenant, &p.AccountID, &p.CustomerID, &p.Number, &typ, &p.Active,
		&p.AreaCode, &p.CountryCode, &p.Extension, &p.CreatedAt, &p.UpdatedAt, &p.Version,
	)
	if err != nil {
		return phone.Phone{}, err
	}
	p.Type = phone.Type(typ)
	p.CreatedAt = p.CreatedAt.UTC()
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}

const (
	replaySQL = `SELECT k.fingerprint, k.phone_id, EXISTS (SELECT 1 FROM phones p WHERE p.id = k.phone_id)
FROM idempotency_keys k
WHERE k.scope = $1 AND k.expires_at > $2`

	// purgeKeysSQL deletes a bounded number of expired keys per statement.
	purgeKeysSQL = `DELETE FROM idempotency_keys WHERE scope IN (
  SELECT scope FROM idempotency_keys WHERE expires_at <= $1 LIMIT 1000)`
)

// Replay returns what is kept of the create made with the idempotency key of
// scope, and false when there is none or it expired before now.
func (db *DB) Replay(ctx context.Context, scope string, now time.Time) (phone.Replay, bool, error) {
	var r phone.Replay
	err := db.pool.QueryRow(ctx, replaySQL, scope, now).Scan(&r.Fingerprint, &r.PhoneID, &r.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return phone.Replay{}, false, nil
	}
	if err != nil {
		return phone.Replay{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	return r, true, nil
}

// PurgeKeys deletes the idempotency keys that expired at or before t and
// returns how many; when ctx ends midway, the count so far comes with the
// error.
func (db *DB) PurgeKeys(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	for {
		tag, err := db.pool.Exec(ctx, purgeKeysSQL, t)
		if err != nil {
			return total, fmt.Errorf("purge idempotency keys: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 1000 {
			return total, nil
		}
	}
}
