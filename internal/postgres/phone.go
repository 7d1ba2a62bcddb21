package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phonesd/phonesd/internal/phone"
)

// phoneColumns are the columns scanPhone reads, in its order.
const phoneColumns = `id, tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, created_at, updated_at, version`

const (
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

// insertEvent appends ev to the outbox inside tx, which holds the lock of
// ev's account.
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
// account's lock is held.
func (db *DB) UpdatePhone(ctx context.Context, c phone.Change) (phone.Phone, error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("begin update phone: %w", err)
	}
	defer tx.Rollback(ctx)

	// The account's lock comes first, before the row lock and any write,
	// as in every transaction that writes to the outbox (see CreatePhones):
	// the transaction's id then follows the commits of its account, and
	// no two transactions wait for each other. Taken after the row lock, it
	// could deadlock: a create holding the account lock, inserting the
	// duplicate key this transaction has just written to the duplicate
	// rule's index, would wait on that entry for this transaction to end.
	if _, err := tx.Exec(ctx, lockAccountsSQL, accountLockClass, accountLocks([]account{{c.Tenant, c.AccountID}})); err != nil {
		return phone.Phone{}, fmt.Errorf("lock account: %w", err)
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
