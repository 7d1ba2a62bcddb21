package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/phonesd/phonesd/internal/groupcommit"
	"github.com/phonesd/phonesd/internal/phone"
)

// phoneColumns are the columns scanPhone reads, in its order.
const phoneColumns = `id, tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, created_at, updated_at, version`

const (
	// lastPhoneIDSQL reads the last id AUTOINCREMENT handed out; the
	// caller, holding the write lock, hands out the next ones itself.
	lastPhoneIDSQL = `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'phones'), 0)`

	// spendPhoneIDsSQL records the last id handed out, so that AUTOINCREMENT
	// never hands out one of them again.
	spendPhoneIDsSQL = `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'phones'`
	firstPhoneIDsSQL = `INSERT INTO sqlite_sequence (name, seq) VALUES ('phones', ?)`

	insertEventSQL = `INSERT INTO outbox (event_id, domain, event_type, payload, created_at, traceparent)
VALUES (?, ?, ?, ?, ?, ?)`

	selectPhoneSQL = `SELECT ` + phoneColumns + `
FROM phones
WHERE id = ? AND tenant = ? AND account_id = ?`

	// listPhonesSQL walks the phones_account index from ?3 on; a NULL
	// filter (?4 active, ?5 type) lets every phone through.
	listPhonesSQL = `SELECT ` + phoneColumns + `
FROM phones
WHERE tenant = ?1 AND account_id = ?2 AND id > ?3
  AND (?4 IS NULL OR active = ?4)
  AND (?5 IS NULL OR type = ?5)
ORDER BY id
LIMIT ?6`

	// updatePhoneSQL names the version it read, so that it can never
	// overwrite a change it did not see.
	updatePhoneSQL = `UPDATE phones SET
  number = ?, type = ?, active = ?, area_code = ?, country_code = ?,
  extension = ?, dup_key = ?, updated_at = ?, version = ?
WHERE id = ? AND version = ?`
)

// CreatePhone stores what c.Write returns for a new id and the
// transaction's time: the phone and its Phone created event. Calls arriving
// together share one transaction and its fsync (see CreatePhones). It
// returns phone.ErrDuplicate when c's phone is active and its account
// already has an active phone with its duplicate key, or the context's
// error when ctx ends first.
func (db *DB) CreatePhone(ctx context.Context, c phone.Creation) (phone.Phone, error) {
	o, err := db.creates.Do(ctx, c)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("create phone: %w", err)
	}
	return o.Phone, o.Err
}

// CreatePhones stores what each creation of cs writes (its phone and its
// Phone created event) and its idempotency key, in one transaction, in order: a later creation that
// duplicates an earlier one of the batch is refused like any duplicate. It
// returns each creation's outcome (a phone, phone.ErrDuplicate or
// phone.ErrKeyTaken), or an error: wrapped by groupcommit.NotCommitted when
// the transaction certainly stored nothing, of unknown outcome otherwise (a
// failed COMMIT).
//
// The batch is written with one statement per table, whatever its size.
// Each statement costs a trip through database/sql and the driver, which for
// a batch of single-row statements outweighed the rows themselves. The ids
// are allocated here, under the write lock, so that the keys and events,
// which carry them, can be written with the phones.
func (db *DB) CreatePhones(ctx context.Context, cs []phone.Creation) ([]phone.Outcome, error) {
	// A transaction that fails before its COMMIT is rolled back in this
	// process, and a crash before the rollback leaves no commit frame in
	// the WAL: nothing of it is ever seen, so the batch may be retried.
	fail := func(err error) ([]phone.Outcome, error) { return nil, groupcommit.NotCommitted(err) }
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fail(fmt.Errorf("begin create phones: %w", err))
	}
	defer tx.Rollback()

	var lastID int64
	if err := tx.StmtContext(ctx, db.writes.lastPhoneID).QueryRowContext(ctx).Scan(&lastID); err != nil {
		return fail(fmt.Errorf("allocate ids: %w", err))
	}
	id := func(i int) int64 { return lastID + 1 + int64(i) }
	// The transaction's time, taken once the write lock is held, so that
	// creation times follow commit order.
	now := time.Now().UTC().Truncate(time.Millisecond)
	ms := now.UnixMilli()
	writes := make([]phone.Write, len(cs))
	for i, c := range cs {
		if writes[i], err = c.Write(id(i), now); err != nil {
			return fail(err)
		}
	}

	var keys [][]any
	for i, c := range cs {
		if k := c.Idempotency; k != nil {
			keys = append(keys, []any{k.Scope, k.Fingerprint, id(i), ms, k.ExpiresAt.UnixMilli()})
		}
	}
	claimed, err := db.claimKeys(ctx, tx, keys)
	if err != nil {
		return fail(fmt.Errorf("claim idempotency keys: %w", err))
	}
	outs := make([]phone.Outcome, len(cs))
	var phones [][]any
	for i, c := range cs {
		if c.Idempotency != nil && !claimed(id(i)) {
			outs[i].Err = fmt.Errorf("claim idempotency key: %w", phone.ErrKeyTaken)
			continue
		}
		w := writes[i]
		p := w.Phone
		phones = append(phones, []any{p.ID, p.Tenant, p.AccountID, p.CustomerID, p.Number, string(p.Type), p.Active,
			p.AreaCode, p.CountryCode, p.Extension, w.Key, p.CreatedAt.UnixMilli(), p.UpdatedAt.UnixMilli(), p.Version})
	}
	inserted, err := db.insertPhones(ctx, tx, phones, id(0), id(len(cs)-1))
	if err != nil {
		return fail(fmt.Errorf("insert phones: %w", err))
	}
	if err := db.spendIDs(ctx, tx, id(len(cs)-1)); err != nil {
		return fail(err)
	}
	var (
		events    [][]any
		committed []phone.Event
	)
	for i := range cs {
		if outs[i].Err != nil {
			continue
		}
		if !inserted(id(i)) {
			outs[i].Err = fmt.Errorf("insert phone: %w", phone.ErrDuplicate)
			continue
		}
		ev := writes[i].Event
		events = append(events, []any{ev.ID, ev.Domain, ev.Type, ev.Payload, ev.CreatedAt.UnixMilli(), nullable(ev.TraceParent)})
		committed = append(committed, ev)
		outs[i].Phone = writes[i].Phone
	}
	_, lastSeq, err := db.insertRows(ctx, tx, &insertEventsSQL, events)
	if err != nil {
		return fail(fmt.Errorf("insert events: %w", err))
	}
	if err := tx.Commit(); err != nil {
		// A COMMIT that fails writing or syncing the WAL may leave its
		// commit frame there, to be replayed at the next open: the
		// batch may be stored.
		return nil, fmt.Errorf("commit create phones: outcome unknown: %w", err)
	}
	db.committed(withSeqs(committed, lastSeq))
	return outs, nil
}

// spendIDs records last as handed out. Every allocated id is spent, also a
// duplicate's: an id is never handed out twice, so whether a phone with a
// given id exists says whether its create succeeded, which is what an
// idempotency key keeps. AUTOINCREMENT itself only records the largest id
// inserted, and has no record at all before the first phone.
func (db *DB) spendIDs(ctx context.Context, tx *sql.Tx, last int64) error {
	res, err := tx.StmtContext(ctx, db.writes.spendPhoneIDs).ExecContext(ctx, last)
	if err != nil {
		return fmt.Errorf("spend ids: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n > 0 {
		return err
	}
	if _, err := tx.ExecContext(ctx, firstPhoneIDsSQL, last); err != nil {
		return fmt.Errorf("spend ids: %w", err)
	}
	return nil
}

// rowsInsert is a multi-row INSERT: the statement before its VALUES rows,
// one row of placeholders, and what follows the rows (an ON CONFLICT
// clause, or nothing).
type rowsInsert struct {
	head, row, tail string
}

// withSeqs sets the seqs of events, the rows a transaction appended to the
// outbox in their order, the last of them last, and returns them. Under
// the write lock, AUTOINCREMENT gives the rows of a transaction
// consecutive seqs, one above the largest ever handed out.
func withSeqs(events []phone.Event, last int64) []phone.Event {
	for i := range events {
		events[i].Seq = last - int64(len(events)-1-i)
	}
	return events
}

// insertRows inserts rows with ins and returns how many rows it stored (a
// row an ON CONFLICT clause skipped is not) and the rowid of the last row
// inserted. The rows go in statements of as many rows as the largest power
// of two that fits, up to maxRowsPerStatement: 37 rows take three, of 32,
// 4 and 1 rows.
func (db *DB) insertRows(ctx context.Context, tx *sql.Tx, ins *rowsInsert, rows [][]any) (stored int, last int64, err error) {
	for len(rows) > 0 {
		n := 1 << (bits.Len(uint(min(len(rows), maxRowsPerStatement))) - 1)
		chunk := rows[:n]
		rows = rows[n:]
		args := make([]any, 0, len(chunk)*len(chunk[0]))
		for _, r := range chunk {
			args = append(args, r...)
		}
		res, err := tx.StmtContext(ctx, db.writes.insert(ins, n)).ExecContext(ctx, args...)
		if err != nil {
			return 0, 0, err
		}
		changed, err := res.RowsAffected()
		if err != nil {
			return 0, 0, err
		}
		if last, err = res.LastInsertId(); err != nil {
			return 0, 0, err
		}
		stored += int(changed)
	}
	return stored, last, nil
}

// The statements of a batch count the rows they store rather than return
// their ids: reading back a row per create through database/sql cost more
// than counting, and a batch nearly always stores every row. Only when
// one is missing are the stored rows looked up, inside the transaction.

// claimKeys claims the idempotency keys of rows (rows of insertKeysSQL)
// and returns which phone ids claimed theirs.
func (db *DB) claimKeys(ctx context.Context, tx *sql.Tx, rows [][]any) (func(id int64) bool, error) {
	stored, _, err := db.insertRows(ctx, tx, &insertKeysSQL, rows)
	if err != nil {
		return nil, err
	}
	if stored == len(rows) {
		return func(int64) bool { return true }, nil
	}
	// A key holds the id of the create that claimed it last; ids are
	// never handed out twice, so a key holding this batch's id is its own.
	claimed := map[int64]bool{}
	for _, r := range rows {
		var owner int64
		if err := tx.QueryRowContext(ctx, keyOwnerSQL, r[0]).Scan(&owner); err != nil {
			return nil, fmt.Errorf("read claimed key: %w", err)
		}
		claimed[owner] = true
	}
	return func(id int64) bool { return claimed[id] }, nil
}

// insertPhones inserts rows (rows of insertPhonesSQL, their ids between
// first and last) and returns which ids were stored: a duplicate is
// skipped.
func (db *DB) insertPhones(ctx context.Context, tx *sql.Tx, rows [][]any, first, last int64) (func(id int64) bool, error) {
	stored, _, err := db.insertRows(ctx, tx, &insertPhonesSQL, rows)
	if err != nil {
		return nil, err
	}
	if stored == len(rows) {
		return func(int64) bool { return true }, nil
	}
	found, err := tx.QueryContext(ctx, phoneIDsSQL, first, last)
	if err != nil {
		return nil, fmt.Errorf("read stored ids: %w", err)
	}
	defer found.Close()
	inserted := map[int64]bool{}
	for found.Next() {
		var id int64
		if err := found.Scan(&id); err != nil {
			return nil, fmt.Errorf("read stored ids: %w", err)
		}
		inserted[id] = true
	}
	if err := found.Err(); err != nil {
		return nil, fmt.Errorf("read stored ids: %w", err)
	}
	return func(id int64) bool { return inserted[id] }, nil
}

const (
	keyOwnerSQL = `SELECT phone_id FROM idempotency_keys WHERE scope = ?`
	phoneIDsSQL = `SELECT id FROM phones WHERE id BETWEEN ? AND ?`
)

// maxRowsPerStatement bounds the rows of one INSERT, and so the size of the
// prepared statements kept. Larger batches form only when commits fall far
// behind, and cost one more statement per 64 rows.
const maxRowsPerStatement = 64

var (
	// insertKeysSQL claims idempotency keys for the ids of their creates.
	// A key of the same scope blocks the claim unless it has expired, when
	// it is replaced.
	insertKeysSQL = rowsInsert{
		head: `INSERT INTO idempotency_keys (scope, fingerprint, phone_id, created_at, expires_at) VALUES `,
		row:  `(?, ?, ?, ?, ?)`,
		tail: `
ON CONFLICT (scope) DO UPDATE SET
  fingerprint = excluded.fingerprint, phone_id = excluded.phone_id,
  created_at = excluded.created_at, expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at <= excluded.created_at`,
	}

	// insertPhonesSQL inserts phones with ids chosen by the caller. ON
	// CONFLICT names the partial unique index, so a duplicate, also of an
	// earlier row of the same statement, is skipped rather than failing the
	// batch.
	insertPhonesSQL = rowsInsert{
		head: `INSERT INTO phones (
  id, tenant, account_id, customer_id, number, type, active,
  area_code, country_code, extension, dup_key, created_at, updated_at, version
) VALUES `,
		row: `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tail: `
ON CONFLICT (tenant, account_id, dup_key) WHERE active DO NOTHING`,
	}

	// insertEventsSQL appends events to the outbox, in the order given.
	insertEventsSQL = rowsInsert{
		head: `INSERT INTO outbox (event_id, domain, event_type, payload, created_at, traceparent) VALUES `,
		row:  `(?, ?, ?, ?, ?, ?)`,
	}
)

// insertEvent appends ev to the outbox inside tx and returns its seq.
func (db *DB) insertEvent(ctx context.Context, tx *sql.Tx, ev phone.Event) (int64, error) {
	res, err := tx.StmtContext(ctx, db.writes.insertEvent).ExecContext(ctx, ev.ID, ev.Domain, ev.Type, ev.Payload, ev.CreatedAt.UnixMilli(), nullable(ev.TraceParent))
	if err != nil {
		return 0, fmt.Errorf("insert %s event: %w", ev.Type, err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("insert %s event: %w", ev.Type, err)
	}
	return seq, nil
}

// nullable stores "" as NULL, which takes no room in a row.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
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
	p, err := scanPhone(db.reads.selectPhone.QueryRowContext(ctx, id, tenant, account))
	if errors.Is(err, sql.ErrNoRows) {
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
	rows, err := db.reads.listPhones.QueryContext(ctx, q.Tenant, q.AccountID, q.AfterID, q.Active, typ, q.Limit)
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

// UpdatePhone reads the phone of c and calls c.Apply with it and the
// transaction's time; when Apply reports a change, it stores the Write
// Apply returned, its phone's state and its event, in one transaction. The
// update names the id and version it read, so it changes that row only. It
// returns the phone as stored afterwards, phone.ErrNotFound,
// phone.ErrDuplicate when the new state is active and its account already
// has another active phone with its duplicate key, Apply's error, or the
// context's error; on error it stores nothing. c.Apply runs while the
// single writer is held.
func (db *DB) UpdatePhone(ctx context.Context, c phone.Change) (phone.Phone, error) {
	// The writer's IMMEDIATE transaction holds the database's write lock
	// from BEGIN on: no other writer can change the phone between the read
	// and the update.
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return phone.Phone{}, fmt.Errorf("begin update phone: %w", err)
	}
	defer tx.Rollback()

	cur, err := scanPhone(tx.StmtContext(ctx, db.writes.selectPhone).QueryRowContext(ctx, c.ID, c.Tenant, c.AccountID))
	if errors.Is(err, sql.ErrNoRows) {
		return phone.Phone{}, fmt.Errorf("select phone %d: %w", c.ID, phone.ErrNotFound)
	}
	if err != nil {
		return phone.Phone{}, fmt.Errorf("select phone %d: %w", c.ID, err)
	}
	// The transaction's time, taken once the write lock is held, so that
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
	res, err := tx.StmtContext(ctx, db.writes.updatePhone).ExecContext(ctx,
		next.Number, string(next.Type), next.Active, next.AreaCode, next.CountryCode,
		next.Extension, w.Key, next.UpdatedAt.UnixMilli(), next.Version,
		cur.ID, cur.Version,
	)
	if err != nil {
		// The update leaves id alone, so the duplicate rule's index is
		// the only unique one it can violate.
		if isUniqueViolation(err) {
			return phone.Phone{}, fmt.Errorf("update phone %d: %w", c.ID, phone.ErrDuplicate)
		}
		return phone.Phone{}, fmt.Errorf("update phone %d: %w", c.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return phone.Phone{}, fmt.Errorf("update phone %d: %w", c.ID, err)
	}
	if n != 1 {
		return phone.Phone{}, fmt.Errorf("update phone %d: version %d is no longer stored", c.ID, cur.Version)
	}

	seq, err := db.insertEvent(ctx, tx, w.Event)
	if err != nil {
		return phone.Phone{}, err
	}
	if err := tx.Commit(); err != nil {
		return phone.Phone{}, fmt.Errorf("commit update phone %d: %w", c.ID, err)
	}
	db.committed(withSeqs([]phone.Event{w.Event}, seq))
	return next, nil
}

// scanner is a row of phoneColumns: *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// scanPhone reads one row of phoneColumns.
func scanPhone(row scanner) (phone.Phone, error) {
	var (
		p                    phone.Phone
		typ                  string
		customer             sql.NullInt64
		area                 sql.NullInt32
		extension            sql.NullString
		createdAt, updatedAt int64
	)
	err := row.Scan(
		&p.ID, &p.Tenant, &p.AccountID, &customer, &p.Number, &typ, &p.Active,
		&area, &p.CountryCode, &extension, &createdAt, &updatedAt, &p.Version,
	)
	if err != nil {
		return phone.Phone{}, err
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

const (
	replaySQL = `SELECT k.fingerprint, k.phone_id, EXISTS (SELECT 1 FROM phones p WHERE p.id = k.phone_id)
FROM idempotency_keys k
WHERE k.scope = ? AND k.expires_at > ?`

	// purgeKeysSQL deletes a bounded number of expired keys, so that a
	// large purge never holds the single writer for long.
	purgeKeysSQL = `DELETE FROM idempotency_keys WHERE rowid IN (
  SELECT rowid FROM idempotency_keys WHERE expires_at <= ? LIMIT 1000)`
)

// Replay returns what is kept of the create made with the idempotency key of
// scope, and false when there is none or it expired before now.
func (db *DB) Replay(ctx context.Context, scope string, now time.Time) (phone.Replay, bool, error) {
	var r phone.Replay
	err := db.reads.replay.QueryRowContext(ctx, scope, now.UnixMilli()).Scan(&r.Fingerprint, &r.PhoneID, &r.Created)
	if errors.Is(err, sql.ErrNoRows) {
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
		res, err := db.writer.ExecContext(ctx, purgeKeysSQL, t.UnixMilli())
		if err != nil {
			return total, fmt.Errorf("purge idempotency keys: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("purge idempotency keys: %w", err)
		}
		total += n
		if n < 1000 {
			return total, nil
		}
	}
}
