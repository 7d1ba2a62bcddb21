package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"phonesd/internal/outbox"
	"phonesd/internal/phone"
)

const (
	pendingEventsSQL = `SELECT seq, event_id, domain, event_type, payload, created_at
FROM outbox
WHERE sent_at IS NULL
ORDER BY seq
LIMIT $1`

	// markSentSQL takes the seqs as one array, so that a batch of any size
	// is one statement. A row already sent keeps its first sent_at. It
	// marks only while $3, the relay lease's epoch the caller holds, is
	// still current (0: no lease), and returns the current epoch. FOR SHARE
	// makes it the fence: a take-over's increment waits for a mark under
	// way to commit, so the new holder reads the outbox after it; and a
	// mark that starts after the increment sees the new epoch, even if
	// its snapshot is older, since a locked row is read at its latest
	// committed version.
	markSentSQL = `WITH lease AS (
  SELECT epoch FROM relay_lease FOR SHARE
), marked AS (
  UPDATE outbox SET sent_at = $1
  WHERE seq = ANY($2) AND sent_at IS NULL
    AND ($3::bigint = 0 OR $3::bigint = (SELECT epoch FROM lease))
)
SELECT epoch FROM lease`

	// pruneSentSQL deletes at most one batch, so that no DELETE runs into
	// statement_timeout however much is due. SKIP LOCKED lets replicas
	// pruning at once share the rows instead of waiting for each other.
	pruneSentSQL = `DELETE FROM outbox
WHERE seq IN (
  SELECT seq FROM outbox
  WHERE sent_at IS NOT NULL AND sent_at < $1
  ORDER BY seq
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)`

	// outboxStatsSQL reads the oldest unsent event, the first entry of the
	// outbox_pending index, and the last seq, the primary key's last
	// entry: two index lookups, whatever the backlog. Counting the unsent
	// rows would read every one of them, 200 ms with 400,000 waiting.
	outboxStatsSQL = `SELECT p.seq, p.created_at, (SELECT MAX(seq) FROM outbox)
FROM (SELECT seq, created_at FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 1) AS p`
)

// pruneBatch is how many rows one pruning statement deletes.
const pruneBatch = 1000

// PendingEvents returns up to limit unsent events in outbox order. It
// returns an error when limit is not positive.
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
		if err := rows.Scan(&ev.Seq, &ev.ID, &ev.Domain, &ev.Type, &ev.Payload, &ev.CreatedAt); err != nil {
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

// MarkSent records the events with the given seqs as sent now; seqs already
// sent or unknown are ignored. A non-zero epoch is the relay lease's term
// the caller holds (see Lease): when a later term has begun, nothing is
// marked and the error wraps outbox.ErrLeaseLost.
func (db *DB) MarkSent(ctx context.Context, seqs []int64, epoch int64) error {
	if len(seqs) == 0 {
		return ctx.Err()
	}
	// A mark lost in a crash only makes the relay deliver its events again,
	// which sinks recognise; so it need not wait for the WAL to reach
	// disk, and leaves the disk to the commits that must.
	var current int64
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(markSentSQL, time.Now().UTC(), seqs, epoch).QueryRow(func(row pgx.Row) error {
		return row.Scan(&current)
	})
	b.Queue("COMMIT")
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("mark events sent: %w", err)
	}
	if epoch != 0 && current != epoch {
		return fmt.Errorf("mark events sent under lease epoch %d, now %d: %w", epoch, current, outbox.ErrLeaseLost)
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
		tag, err := db.pool.Exec(ctx, pruneSentSQL, sentBefore, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune sent events: %w", err)
		}
		n := tag.RowsAffected()
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
// pending, and otherwise an upper bound, over by the seqs that failed
// transactions consumed and by the events sent out of order behind an
// unsent one (see Running with NATS JetStream in the README).
func (db *DB) OutboxStats(ctx context.Context) (pending int64, oldest time.Time, err error) {
	var first, last int64
	var created time.Time
	err = db.pool.QueryRow(ctx, outboxStatsSQL).Scan(&first, &created, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("select outbox stats: %w", err)
	}
	return last - first + 1, created.UTC(), nil
}
