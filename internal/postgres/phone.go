package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"phonesd/internal/phone"
)

// phoneColumns are the columns scanPhone reads, in its order.
const phoneColumns = `id, tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, created_at, updated_at, version`

const (
	lockOutboxOrderSQL = `SELECT pg_advisory_xact_lock($1)`

	insertPhoneSQL = `INSERT INTO phones (
  tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, dup_key,
  created_at, updated_at, version
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)
RETURNING id`

	insertEventSQL = `INSERT INTO outbox (event_id, domain, event_type, payload, created_at)
VALUES ($1, $2, $3, $4, $5)`

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

// CreatePhone stores the phone of c, with version 1, and its Phone created
// event in one transaction. It returns phone.ErrDuplicate when c's phone is
// active and its account already has an active phone with key c.Key, or the
// context's error when ctx ends first. c.EventID must be a UUID.
func (db *DB) CreatePhone(ctx context.Context, c phone.Creation) (phone.Phone, error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("begin create phone: %w", err)
	}
	defer tx.Rollback(ctx)

	// The relay publishes unsent events in seq order, but seqs are handed
	// out at insert time, not at commit: were a transaction holding seq 10
	// still open while one holding seq 11 committed, the relay could publish
	// 11 and then, once 10 commits, publish it out of order. Transactions
	// that append to the outbox therefore take this lock first, in every
	// replica, so that seq order is commit order. The price: creates and
	// updates run one at a time across all replicas, each holding the lock
	// for a few round trips and the commit. The lock ends with the
	// transaction.
	if _, err := tx.Exec(ctx, lockOutboxOrderSQL, outboxOrderLockKey); err != nil {
		return phone.Phone{}, fmt.Errorf("lock outbox order: %w", err)
	}
	// The transaction's time, taken once the lock is held, so that creation
	// times follow commit order.
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := c.Phone
	err = tx.QueryRow(ctx, insertPhoneSQL,
		p.Tenant, p.AccountID, p.CustomerID, p.Number, string(p.Type), p.Active,
		p.AreaCode, p.CountryCode, p.Extension, c.Key,
		now, now,
	).Scan(&p.ID)
	if err != nil {
		if isDuplicate(err) {
			return phone.Phone{}, fmt.Errorf("insert phone: %w", phone.ErrDuplicate)
		}
		return phone.Phone{}, fmt.Errorf("insert phone: %w", err)
	}
	p.CreatedAt = now
	p.UpdatedAt = now
	p.Version = 1

	ev, err := phone.CreatedEvent(c.EventID, p, c.Audit)
	if err != nil {
		return phone.Phone{}, err
	}
	if err := insertEvent(ctx, tx, ev); err != nil {
		return phone.Phone{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return phone.Phone{}, fmt.Errorf("commit create phone: %w", err)
	}
	return p, nil
}

// insertEvent appends ev to the outbox inside tx, which holds
// outboxOrderLockKey.
func insertEvent(ctx context.Context, tx pgx.Tx, ev phone.Event) error {
	_, err := tx.Exec(ctx, insertEventSQL, ev.ID, ev.Domain, ev.Type, ev.Payload, ev.CreatedAt)
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

// UpdatePhone locks the phone of c and calls c.Apply with it; when Apply
// reports a change, it stores Apply's phone with the next version and the
// transaction's time as update time, and its Phone updated event, all in one
// transaction. The id, tenant, account, customer and creation time stay as
// stored whatever Apply returns. It returns the phone as stored afterwards,
// phone.ErrNotFound, phone.ErrDuplicate when the new state is active and its
// account already has another active phone with its duplicate key, Apply's
// error, or the context's error; on error it stores nothing. c.Apply runs
// while the outbox order lock is held, so it must be quick and must not
// write through the store.
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
	next, changed, err := c.Apply(cur)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("change phone %d: %w", c.ID, err)
	}
	if !changed {
		return cur, nil
	}

	// The transaction's time, taken once the locks are held, so that
	// update times follow commit order.
	now := time.Now().UTC().Truncate(time.Millisecond)
	next = successor(cur, next, now)
	tag, err := tx.Exec(ctx, updatePhoneSQL,
		next.Number, string(next.Type), next.Active, next.AreaCode, next.CountryCode,
		next.Extension, next.DuplicateKey(), now, next.Version,
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

	ev, err := phone.ChangedEvent(c.EventID, next, c.Audit)
	if err != nil {
		return phone.Phone{}, err
	}
	if err := insertEvent(ctx, tx, ev); err != nil {
		return phone.Phone{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return phone.Phone{}, fmt.Errorf("commit update phone %d: %w", c.ID, err)
	}
	return next, nil
}

// successor returns next as the version after cur, updated at now. What
// Apply may not change (id, tenant, account, customer, creation time) is
// taken from cur, so a change can never move a phone.
func successor(cur, next phone.Phone, now time.Time) phone.Phone {
	next.ID = cur.ID
	next.Tenant = cur.Tenant
	next.AccountID = cur.AccountID
	next.CustomerID = cur.CustomerID
	next.CreatedAt = cur.CreatedAt
	next.UpdatedAt = now
	next.Version = cur.Version + 1
	return next
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
