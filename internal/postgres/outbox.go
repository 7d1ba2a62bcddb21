package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/phone"
)

const (
	pendingEventsSQL = `SELECT seq, event_id, domain, event_type, payload, created_at, COALESCE(traceparent, '')
FROM outbox
WHERE seq > (SELECT delivered_seq FROM relay_lease)
ORDER BY seq
LIMIT $1`

	// markDeliveredSQL moves the position forward, never back, only while
	// $2, the relay lease's epoch the caller holds, is still current (0: no
	// lease), and returns a row only when that is so. Its row lock is the
	// fence: a take-over's increment of the epoch waits for a mark under
	// way to commit, so the new holder reads the outbox after it; and a
	// mark that starts after the increment sees the new epoch, since an
	// UPDATE reads the row's latest committed version.
	markDeliveredSQL = `UPDATE relay_lease SET delivered_seq = GREATEST(delivered_seq, $1)
WHERE $2::bigint = 0 OR epoch = $2::bigint
RETURNING epoch`

	// pruneDeliveredSQL deletes at most one batch, so that no DELETE runs
	// into statement_timeout however much is due. The oldest events come
	// first in seq order, so the scan stops early. SKIP LOCKED lets
	// replicas pruning at once share the rows instead of waiting.
	pruneDeliveredSQL = `DELETE FROM outbox
WHERE seq IN (
  SELECT seq FROM outbox
  WHERE seq <= (SELECT delivered_seq FROM relay_lease) AND created_at < $1
  ORDER BY seq
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)`

	// outboxStatsSQL reads the position, the last seq (the primary key's
	// last entry) and the creation of the first event after the position:
	// three lookups, whatever the backlog.
	outboxStatsSQL = `SELECT l.delivered_seq, COALESCE((SELECT MAX(seq) FROM outbox), 0),
  (SELECT created_at FROM outbox WHERE seq > l.delivered_seq ORDER BY seq LIMIT 1)
FROM relay_lease AS l`
)

// pruneBatch is how many rows one pruning statement deletes.
const pruneBatch = 1000

// PendingEvents returns up to limit events after the delivered position,
// in outbox order. It returns an error when limit is not positive.
func (db *DB) PendingEvents(ctx context.Context, limit int) ([]phone.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("select pending events: limit %d is not positive", limit)
	}
	rows, err := db.pool.Query(ctx, pendingEventsSQL, limit)
	if err != nil {
		return nil, fmt.Errorf("select pending events: %w", err)
	}
	defer rows.Close()

	var events []phone.Event
	for rows.Next() {
		var ev phone.Event
		if err := rows.Scan(&ev.Seq, &ev.ID, &ev.Domain, &ev.Type, &ev.Payload, &ev.CreatedAt, &ev.TraceParent); err != nil {
			return nil, fmt.Errorf("select pending events: %w", err)
		}
		ev.CreatedAt = ev.CreatedAt.UTC()
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select pending events: %w", err)
	}
	return events, nil
}

// MarkDelivered moves the delivered position to through: every event up to
// it is delivered. A position already further is kept. A non-zero epoch is
// the relay lease's term the caller holds (see Lease): when a later term
// has begun, nothing is marked and the error wraps outbox.ErrLeaseLost.
func (db *DB) MarkDelivered(ctx context.Context, through int64, epoch int64) error {
	// A mark lost in a crash only makes the relay deliver its events again,
	// which sinks recognise; so it need not wait for the WAL to reach
	// disk, and leaves the disk to the commits that must.
	var current int64
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(markDeliveredSQL, through, epoch).QueryRow(func(row pgx.Row) error {
		return row.Scan(&current)
	})
	b.Queue("COMMIT")
	err := db.pool.SendBatch(ctx, b).Close()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("mark events delivered under lease epoch %d, no longer current: %w", epoch, outbox.ErrLeaseLost)
	case err != nil:
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
		tag, err := db.pool.Exec(ctx, pruneDeliveredSQL, createdBefore, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune delivered events: %w", err)
		}
		n := tag.RowsAffected()
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// OutboxStats returns how many events wait after the delivered position
// and when the first of them was created; oldest is the zero time when none
// waits. The count is the span of seqs from the position to the last event:
// exact when nothing waits, and otherwise an upper bound, over by the seqs
// that failed transactions consumed.
func (db *DB) OutboxStats(ctx context.Context) (pending int64, oldest time.Time, err error) {
	var delivered, last int64
	var first *time.Time
	if err := db.pool.QueryRow(ctx, outboxStatsSQL).Scan(&delivered, &last, &first); err != nil {
		return 0, time.Time{}, fmt.Errorf("select outbox stats: %w", err)
	}
	if first == nil {
		return 0, time.Time{}, nil
	}
	return last - delivered, first.UTC(), nil
}
