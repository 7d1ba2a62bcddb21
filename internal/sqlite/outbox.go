package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"phonesd/internal/phone"
)

const (
	pendingEventsSQL = `SELECT seq, event_id, domain, event_type, payload, created_at
FROM outbox
WHERE sent_at IS NULL
ORDER BY seq
LIMIT ?`

	// markSentSQL takes the seqs as one JSON array, so that a batch of any
	// size is one statement with two parameters. A row already sent keeps
	// its first sent_at.
	markSentSQL = `UPDATE outbox SET sent_at = ?
WHERE seq IN (SELECT value FROM json_each(?)) AND sent_at IS NULL`

	// pruneSentSQL deletes at most one batch: a long DELETE would hold the
	// single write lock, and creates would wait for it.
	pruneSentSQL = `DELETE FROM outbox
WHERE seq IN (
  SELECT seq FROM outbox
  WHERE sent_at IS NOT NULL AND sent_at < ?
  ORDER BY seq
  LIMIT ?
)`

	// outboxStatsSQL reads the oldest unsent event, the first entry of the
	// outbox_pending index, and the last seq, the primary key's last
	// entry: two index lookups, whatever the backlog. Counting the unsent
	// rows would read every one of them, 200 ms with 400,000 waiting.
	outboxStatsSQL = `SELECT p.seq, p.created_at, (SELECT MAX(seq) FROM outbox)
FROM (SELECT seq, created_at FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 1) AS p`
)

// pruneBatch is how many rows one pruning transaction deletes.
const pruneBatch = 1000

// PendingEvents returns up to limit unsent events in outbox order. It
// returns an error when limit is not positive.
func (db *DB) PendingEvents(ctx context.Context, limit int) ([]phone.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("select pending events: limit %d is not positive", limit)
	}
	rows, err := db.reads.pendingEvents.QueryContext(ctx, limit)
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
		if err := rows.Scan(&ev.Seq, &ev.ID, &ev.Domain, &ev.Type, &ev.Payload, &createdAt); err != nil {
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

// MarkSent records the events with the given seqs as sent now; seqs already
// sent or unknown are ignored. The epoch is ignored: only this process opens
// the file, so its relay holds no lease.
func (db *DB) MarkSent(ctx context.Context, seqs []int64, epoch int64) error {
	if len(seqs) == 0 {
		return ctx.Err()
	}
	list, err := json.Marshal(seqs)
	if err != nil {
		return fmt.Errorf("mark events sent: %w", err)
	}
	if _, err := db.writes.markSent.ExecContext(ctx, time.Now().UnixMilli(), string(list)); err != nil {
		return fmt.Errorf("mark events sent: %w", err)
	}
	return nil
}

// PruneSent deletes the events sent before sentBefore and returns how many
// it deleted; unsent events are never deleted. When ctx ends midway, the
// batches already deleted stay deleted and their count is returned with the
// error.
func (db *DB) PruneSent(ctx context.Context, sentBefore time.Time) (int64, error) {
	var total int64
	for {
		res, err := db.writer.ExecContext(ctx, pruneSentSQL, sentBefore.UnixMilli(), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune sent events: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune sent events: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// OutboxStats returns how many events are unsent and when the oldest of them
// was created; oldest is the zero time when none is pending. The count is
// the span of seqs from the oldest unsent event to the last event, read
// from two indexes without visiting the rows between: exact when nothing is
// pending, and otherwise an upper bound, over by the events sent out of
// order behind an unsent one (see Running with NATS JetStream in the
// README). Seqs have no gaps here: a rolled-back transaction gives its seqs
// back.
func (db *DB) OutboxStats(ctx context.Context) (pending int64, oldest time.Time, err error) {
	var first, created, last int64
	err = db.reads.outboxStats.QueryRowContext(ctx).Scan(&first, &created, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("select outbox stats: %w", err)
	}
	return last - first + 1, time.UnixMilli(created).UTC(), nil
}
