package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"phonesd/internal/phone"
)

const (
	insertPhoneSQL = `INSERT INTO phones (
  tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, dup_key,
  created_at, updated_at, version
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`

	insertEventSQL = `INSERT INTO outbox (event_id, domain, event_type, payload, created_at)
VALUES (?, ?, ?, ?, ?)`

	selectPhoneSQL = `SELECT id, tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, created_at, updated_at
FROM phones
WHERE id = ? AND tenant = ? AND account_id = ?`
)

// CreatePhone stores the phone of c and its Phone created event in one
// transaction. It returns phone.ErrDuplicate when c's phone is active and its
// account already has an active phone with key c.Key, or the context's error
// when ctx ends first.
func (db *DB) CreatePhone(ctx context.Context, c phone.Creation) (phone.Phone, error) {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("begin create phone: %w", err)
	}
	defer tx.Rollback()

	// The transaction's time, taken once the write lock is held, so that
	// creation times follow commit order.
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := c.Phone
	res, err := tx.ExecContext(ctx, insertPhoneSQL,
		p.Tenant, p.AccountID, p.CustomerID, p.Number, string(p.Type), p.Active,
		p.AreaCode, p.CountryCode, p.Extension, c.Key,
		now.UnixMilli(), now.UnixMilli(),
	)
	if err != nil {
		if isUniqueViolation(err) {
			return phone.Phone{}, fmt.Errorf("insert phone: %w", phone.ErrDuplicate)
		}
		return phone.Phone{}, fmt.Errorf("insert phone: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return phone.Phone{}, fmt.Errorf("insert phone: read id: %w", err)
	}
	p.ID = id
	p.CreatedAt = now
	p.UpdatedAt = now

	ev, err := phone.CreatedEvent(c.EventID, p, c.Audit)
	if err != nil {
		return phone.Phone{}, err
	}
	if err := insertEvent(ctx, tx, ev); err != nil {
		return phone.Phone{}, err
	}
	if err := tx.Commit(); err != nil {
		return phone.Phone{}, fmt.Errorf("commit create phone: %w", err)
	}
	return p, nil
}

// insertEvent appends ev to the outbox inside tx.
func insertEvent(ctx context.Context, tx *sql.Tx, ev phone.Event) error {
	_, err := tx.ExecContext(ctx, insertEventSQL, ev.ID, ev.Domain, ev.Type, ev.Payload, ev.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert %s event: %w", ev.Type, err)
	}
	return nil
}

// isUniqueViolation reports whether err is SQLite's UNIQUE constraint
// failure. The extended code tells it apart from NOT NULL or CHECK failures,
// which share the primary SQLITE_CONSTRAINT code but are bugs, not duplicates.
func isUniqueViolation(err error) bool {
	var serr *sqlite.Error
	return errors.As(err, &serr) && serr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// Phone returns the phone id of the account of tenant. It returns
// phone.ErrNotFound when there is none, so another tenant's or account's
// phone is as absent as a missing one.
func (db *DB) Phone(ctx context.Context, tenant string, account, id int64) (phone.Phone, error) {
	var (
		p                    phone.Phone
		typ                  string
		customer             sql.NullInt64
		area                 sql.NullInt32
		extension            sql.NullString
		createdAt, updatedAt int64
	)
	err := db.reader.QueryRowContext(ctx, selectPhoneSQL, id, tenant, account).Scan(
		&p.ID, &p.Tenant, &p.AccountID, &customer, &p.Number, &typ, &p.Active,
		&area, &p.CountryCode, &extension, &createdAt, &updatedAt,
	)
	if errors.Is(err, sql.ErrNoRows) {
		return phone.Phone{}, fmt.Errorf("select phone %d: %w", id, phone.ErrNotFound)
	}
	if err != nil {
		return phone.Phone{}, fmt.Errorf("select phone %d: %w", id, err)
	}
	p.Type = phone.Type(typ)
	if customer.Valid {
		p.CustomerID = &customer.Int64
	}
	if area.Valid {
		p.AreaCode = &area.Int32
	}
	if extension.Valid {
		p.Extension = &extension.String
	}
	p.CreatedAt = time.UnixMilli(createdAt).UTC()
	p.UpdatedAt = time.UnixMilli(updatedAt).UTC()
	return p, nil
}
