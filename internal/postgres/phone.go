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

	selectPhoneSQL = `SELECT id, tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, created_at, updated_at
FROM phones
WHERE id = $1 AND tenant = $2 AND account_id = $3`
)

// uniqueViolation is PostgreSQL's SQLSTATE for a unique index violation.
const uniqueViolation = "23505"

// CreatePhone stores the phone of c and its Phone created event in one
// transaction. It returns phone.ErrDuplicate when c's phone is active and its
// account already has an active phone with key c.Key, or the context's error
// when ctx ends first. c.EventID must be a UUID.
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
	// replica, so that seq order is commit order. The price: creates run
	// one at a time across all replicas, each holding the lock for three
	// round trips and the commit. The lock ends with the transaction.
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
	var (
		p   phone.Phone
		typ string
	)
	err := db.pool.QueryRow(ctx, selectPhoneSQL, id, tenant, account).Scan(
		&p.ID, &p.Tenant, &p.AccountID, &p.CustomerID, &p.Number, &typ, &p.Active,
		&p.AreaCode, &p.CountryCode, &p.Extension, &p.CreatedAt, &p.UpdatedAt,
	)
	if errors.Is(err, pgx.ErrNoRows) {
		return phone.Phone{}, fmt.Errorf("select phone %d: %w", id, phone.ErrNotFound)
	}
	if err != nil {
		return phone.Phone{}, fmt.Errorf("select phone %d: %w", id, err)
	}
	p.Type = phone.Type(typ)
	p.CreatedAt = p.CreatedAt.UTC()
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}
