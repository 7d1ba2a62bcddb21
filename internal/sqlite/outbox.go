package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/phonesd/phonesd/internal/phone"
)

const (
	pendingEventsSQL = `SELECT seq, event_id, domain, event_type, payload, created_at, COALESCE(traceparent, '')
FROM outbox
WHERE seq > (SELECT delivered_seq FROM outbox_position)
ORDER BY seq
LIMIT ?`

	eventsAfterSQL = `SELECT seq, event_id, domain, event_type, payload, created_at, COALESCE(traceparent, '')
FROM outbox
WHERE seq > ?
ORDER BY seq
LIMIT ?`

	// markDeliveredSQL moves the position forward, never back.
	markDeliveredSQL = `UPDATE outbox_position SET delivered_seq = ?1 WHERE delivered_seq < ?1`

	// pruneDeliveredSQL deletes at most one batch: a long DELETE would hold
	// the single write lock, and creates would wait for it. The oldest
	// events come first in seq order, so the scan stops early.
	pruneDeliveredSQL = `DELETE FROM outbox
WHERE seq IN (
  SELECT seq FROM outbox
  WHERE seq <= (SELECT delivered_seq FROM outbox_position) AND created_at < ?
  ORDER BY seq
  LIMIT ?
)`

	// outboxStatsSQL reads the position, the last seq (the primary key's
	// last entry) and the creation of the first event after the position:
	// three lookups, whatever the backlog.
	outboxStatsSQL = `SELECT p.delivered_seq, COALESCE((SELECT MAX(seq) FROM outbox), 0),
  (SELECT created_at FROM outbox WHERE seq > p.delivered_seq ORDER BY seq LIMIT 1)
FROM outbox_position AS p`
)

// pruneBatch is how many rows one pruning transaction deletes.
const pruneBatch = 1000

// PendingEvents returns up to limit events after the delivered position,
// in outbox order. It returns an error when limit is not positive.
func (db *DB) PendingEvents(ctx context.Context, limit int) ([]phone.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("select pending events: limit %d is not positive", limit)
	}
	return scanEvents(db.reads.pendingEvents.QueryContext(ctx, limit))
}

// EventsAfter returns up to limit events after the seq after, in outbox
// order, delivered or not. It returns an error when limit is not positive.
func (db *DB) EventsAfter(ctx context.Context, after int64, limit int) ([]phone.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("select pending events: limit %d is not positive", limit)
	}
	return scanEvents(db.reads.eventsAfter.QueryContext(ctx, after, limit))
}

// scanEvents reads the events a query of the outbox returned.
func scanEvents(rows *sql.Rows, err error) ([]phone.Event, error) {
	if err != nil {
		return nil, fmt.Errorf("select pending events: %w", err)
	}
	defer rows.Close()

	var events []phone.Event
	for rows.Next() {
		var (
			ev        phone.Event
			createdAt int64
		)
		if err := rows.Scan(&ev.Seq, &ev.ID, &ev.Domain, &ev.Type, &ev.Payload, &createdAt, &ev.TraceParent); err != nil {
			return nil, fmt.Errorf("select pending events: %w", err)
		}
		ev.CreatedAt = time.UnixMilli(createdAt).UTC()
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select pending events: %w", err)
	}
	return events, nil
}

// MarkDelivered moves the delivered position to through: every event up
// to it is delivered. A position already further is kept. The epoch is
// ignored: only this process opens the file, so its relay holds no lease.
func (db *DB) MarkDelivered(ctx context.Context, through int64, epoch int64) error {
	if _, err := db.writes.markDelivered.ExecContext(ctx, through); err != nil {
		return fmt.Errorf("mark events delivered through seq %d: %w", through, err)
	}
	return nil
}

// PruneDelivered deletes the delivered events created before createdBefore
// and returns how many it deleted; events after the delivered position are
// never deleted. When ctx ends midway, the batches already deleted stay
// deleted and their count is returned with the error.
func (db *DB) PruneDelivered(ctx context.Context, createdBefore time.Time) (int64, error) {
	var total int64
	for {
		res, err := db.writer.ExecContext(ctx, pruneDeliveredSQL, createdBefore.UnixMilli(), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune delivered events: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune delivered events: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// OutboxStats returns how many events wait after the delivered position
// and when the first of them was created; oldest is the zero time when none
// waits. Seqs have no gaps here (a rolled-back transaction gives its seqs
// back), so the count is exact.
func (db *DB) OutboxStats(ctx context.Context) (pending int64, oldest time.Time, err error) {
	var delivered, last int64
	var first sql.NullInt64
	if err := db.reads.outboxStats.QueryRowContext(ctx).Scan(&delivered, &last, &first); err != nil {
		return 0, time.Time{}, fmt.Errorf("select outbox stats: %w", err)
	}
	if !first.Valid {
		return 0, time.Time{}, nil
	}
	return last - delivered, time.UnixMilli(first.Int64).UTC(), nil
}
