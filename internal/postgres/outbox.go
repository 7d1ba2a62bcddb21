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
	// readEventsSQL reads up to %d events after the point (xid, seq) that
	// the FROM item it follows, named a, holds, in transaction id order,
	// and only those of transactions below the oldest one still running
	// anywhere on the server (the snapshot's xmin): every transaction with
	// a smaller id has ended, so no event can later appear behind what it
	// returns. The price is that one long transaction that has written
	// anything, in any database of the server, holds delivery back until
	// it ends.
	//
	// The limit is written into the statement (see readEventsStatement)
	// rather than passed as a parameter: with LIMIT $1 no generic plan
	// costs as little as a plan for the limit given, so PostgreSQL planned
	// the statement again at every execution, which cost the server about
	// twice the CPU per event read in rounds of 32 events
	// (BenchmarkEventsAfter).
	readEventsSQL = `, LATERAL (
  SELECT * FROM outbox AS o
  WHERE (o.xid, o.seq) > (a.xid, a.seq) AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY o.xid, o.seq
  LIMIT %d
) AS o
ORDER BY o.xid, o.seq`
	eventColumnsSQL = `SELECT o.seq, o.event_id, o.domain, o.event_type, o.payload, o.created_at, COALESCE(o.traceparent, '')`

	// pendingEventsSQL reads the events after the delivered position.
	pendingEventsSQL = eventColumnsSQL + `
FROM (SELECT position_xid AS xid, position_seq AS seq FROM relay_lease) AS a` + readEventsSQL

	// eventsAfterSQL reads the events after the event of seq $1 (the
	// outbox's start for 0) instead of after the position: a relay reads
	// on from what it published, and marks its position less often.
	eventsAfterSQL = eventColumnsSQL + `
FROM (
  SELECT xid, seq FROM outbox WHERE seq = $1
  UNION ALL SELECT '0'::xid8, 0 WHERE $1 = 0
) AS a` + readEventsSQL

	// eventExistsSQL tells whether the event of seq $1 is in the outbox.
	eventExistsSQL = `SELECT EXISTS (SELECT 1 FROM outbox WHERE seq = $1)`

	// markDeliveredSQL moves the position forward to the event of seq $1,
	// never back, only while $2, the relay lease's epoch the caller holds,
	// is still current (0: no lease), and returns a row only when that is
	// so, saying whether the event was found. Its row lock is the fence: a
	// take-over's increment of the epoch waits for a mark under way to
	// commit, so the new holder reads the outbox after it; and a mark that
	// starts after the increment sees the new epoch, since an UPDATE reads
	// the row's latest committed version.
	markDeliveredSQL = `UPDATE relay_lease AS l SET
  position_xid = CASE WHEN (o.xid, o.seq) > (l.position_xid, l.position_seq) THEN o.xid ELSE l.position_xid END,
  position_seq = CASE WHEN (o.xid, o.seq) > (l.position_xid, l.position_seq) THEN o.seq ELSE l.position_seq END
FROM (SELECT 1) AS one
LEFT JOIN outbox AS o ON o.seq = $1
WHERE $2::bigint = 0 OR l.epoch = $2::bigint
RETURNING l.epoch, o.seq IS NOT NULL`

	// pruneDeliveredSQL deletes at most one batch, so that no DELETE runs
	// into statement_timeout however much is due. The oldest events come
	// first in the outbox's order, so the scan stops early. SKIP LOCKED
	// lets replicas pruning at once share the rows instead of waiting. The
	// lateral subqueries here and above let the position bound the
	// (xid, seq) index's scan, rather than filter every row it passes.
	pruneDeliveredSQL = `DELETE FROM outbox
WHERE seq = ANY (ARRAY(
  SELECT o.seq FROM relay_lease AS l, LATERAL (
    SELECT seq FROM outbox AS o
    WHERE (o.xid, o.seq) <= (l.position_xid, l.position_seq) AND o.created_at < $1
    ORDER BY o.xid, o.seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
  ) AS o
))`

	// settleFromSQL reads the first transaction id not yet assigned, and
	// settledSQL whether every transaction below it has ended.
	settleFromSQL = `SELECT pg_snapshot_xmax(pg_current_snapshot())::text`
	settledSQL    = `SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8`

	// outboxStatsSQL reads the last seq (the primary key's last entry) and
	// the first event after the position (the (xid, seq) index's next
	// entry): two lookups, whatever the backlog.
	outboxStatsSQL = `SELECT COALESCE((SELECT MAX(seq) FROM outbox), 0), f.seq, f.created_at
FROM relay_lease AS l
LEFT JOIN LATERAL (
  SELECT seq, created_at FROM outbox AS o
  WHERE (o.xid, o.seq) > (l.position_xid, l.position_seq)
  ORDER BY o.xid, o.seq
  LIMIT 1
) AS f ON true`
)

// pruneBatch is how many rows one pruning statement deletes.
const pruneBatch = 1000

// The relay reads on from what it published, and marks its position every
// so many events rather than every round.
var _ outbox.AfterReader = (*DB)(nil)

// PendingEvents returns up to limit events after the delivered position,
// in outbox order: by transaction id, then seq, and only events of
// transactions older than every transaction still running (see
// readEventsSQL). It returns an error when limit is not positive.
func (db *DB) PendingEvents(ctx context.Context, limit int) ([]phone.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("select pending events: limit %d is not positive", limit)
	}
	return scanEvents(db.pool.Query(ctx, readEventsStatement(pendingEventsSQL, limit)))
}

// readEventsStatement returns sql, one of the statements that end with
// readEventsSQL, for up to limit events. A relay reads with one limit, so
// each connection prepares one statement of each.
func readEventsStatement(sql string, limit int) string {
	return fmt.Sprintf(sql, limit)
}

// EventsAfter returns up to limit events that follow the event of seq
// after (0: from the start) in the outbox's order (see readEventsSQL),
// delivered or not. An event the relay published stays until its position
// is marked past it and its retention ends, so a missing one is an error,
// not an empty outbox: reading nothing after it would stop delivery
// without a word.
func (db *DB) EventsAfter(ctx context.Context, after int64, limit int) ([]phone.Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("select events after seq %d: limit %d is not positive", after, limit)
	}
	events, err := scanEvents(db.pool.Query(ctx, readEventsStatement(eventsAfterSQL, limit), after))
	if err != nil || len(events) > 0 {
		return events, err
	}
	var exists bool
	if err := db.pool.QueryRow(ctx, eventExistsSQL, after).Scan(&exists); err != nil {
		return nil, fmt.Errorf("select events after seq %d: %w", after, err)
	}
	if !exists && after != 0 {
		return nil, fmt.Errorf("select events after seq %d: no such event in the outbox", after)
	}
	return nil, nil
}

// scanEvents reads the events a query of the outbox returned.
func scanEvents(rows pgx.Rows, err error) ([]phone.Event, error) {
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

// settlePoll is how often SettleOutbox asks whether it may return.
const settlePoll = 5 * time.Millisecond

// SettleOutbox returns once PendingEvents can read every event committed
// before the call: once every transaction that had begun writing, on the
// whole server, has ended. It is usually a few milliseconds; a long
// transaction anywhere on the server holds it as long. It returns ctx's
// error when ctx ends first.
func (db *DB) SettleOutbox(ctx context.Context) error {
	var from string
	if err := db.pool.QueryRow(ctx, settleFromSQL).Scan(&from); err != nil {
		return fmt.Errorf("settle outbox: %w", err)
	}
	for {
		var settled bool
		if err := db.pool.QueryRow(ctx, settledSQL, from).Scan(&settled); err != nil {
			return fmt.Errorf("settle outbox: %w", err)
		}
		if settled {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("settle outbox: %w", ctx.Err())
		case <-time.After(settlePoll):
		}
	}
}

// MarkDelivered moves the delivered position to the event of seq through:
// every event up to it, in outbox order, is delivered. A position already
// further is kept; through 0 marks nothing. It returns an error when
// through is not in the outbox. A non-zero epoch is
// the relay lease's term the caller holds (see Lease): when a later term
// has begun, nothing is marked and the error wraps outbox.ErrLeaseLost.
func (db *DB) MarkDelivered(ctx context.Context, through int64, epoch int64) error {
	// A mark lost in a crash only makes the relay deliver its events again,
	// which sinks recognise; so it need not wait for the WAL to reach
	// disk, and leaves the disk to the commits that must.
	var (
		current int64
		found   bool
	)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit = off")
	b.Queue(markDeliveredSQL, through, epoch).QueryRow(func(row pgx.Row) error {
		return row.Scan(&current, &found)
	})
	b.Queue("COMMIT")
	err := db.pool.SendBatch(ctx, b).Close()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("mark events delivered under lease epoch %d, no longer current: %w", epoch, outbox.ErrLeaseLost)
	case err != nil:
		return fmt.Errorf("mark events delivered through seq %d: %w", through, err)
	case !found && through != 0:
		return fmt.Errorf("mark events delivered through seq %d: no such event in the outbox", through)
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
// and when the first of them, in outbox order, was created; oldest is the
// zero time when none waits. The count is exact when nothing waits, and
// otherwise an estimate: the span of seqs from the first event waiting to
// the last event, which counts the seqs of failed transactions and of
// events already delivered in that span, and misses the events waiting
// with a smaller seq than the first (written before it, by a transaction
// with a larger id).
func (db *DB) OutboxStats(ctx context.Context) (pending int64, oldest time.Time, err error) {
	var (
		last  int64
		first *int64
		at    *time.Time
	)
	if err := db.pool.QueryRow(ctx, outboxStatsSQL).Scan(&last, &first, &at); err != nil {
		return 0, time.Time{}, fmt.Errorf("select outbox stats: %w", err)
	}
	if first == nil {
		return 0, time.Time{}, nil
	}
	return last - *first + 1, at.UTC(), nil
}
