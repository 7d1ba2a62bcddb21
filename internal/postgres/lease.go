package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phonesd/phonesd/internal/outbox"
)

// relayLeaseKey is held, at session level, by the one replica whose relay
// delivers the outbox.
const relayLeaseKey int64 = 0x70686f6e65736403

const (
	// leaseCheckTimeout bounds each round trip of the lease's session.
	leaseCheckTimeout = 2 * time.Second
	// leaseProbeInterval is how long the held lease's session may stay
	// silent before it is made to answer. A session the server ends is
	// noticed at once; a link that dies silently, within this and
	// leaseCheckTimeout, well before the server frees the lock (its
	// keepalives take about 11 s, see newLease).
	leaseProbeInterval = time.Second
)

const (
	tryLeaseSQL = `SELECT pg_try_advisory_lock($1)`
	readOnlySQL = `SELECT current_setting('transaction_read_only')`
	// takeOverSQL begins a new term. It waits for the marks under way with
	// the previous epoch to commit (markDeliveredSQL updates the same row),
	// so the new holder reads the outbox after them.
	takeOverSQL = `UPDATE relay_lease SET epoch = epoch + 1 RETURNING epoch`
)

// Lease is the right to deliver the outbox, held by one replica at a time:
// a session-level advisory lock on a connection of its own. When the holder
// dies, PostgreSQL ends its session and frees the lock, and a standby takes
// it at its next Hold. Each take-over increments the lease's epoch in the
// database, and MarkDelivered checks it: a holder whose session died without it
// noticing (a partition) can mark nothing once another has taken over.
// While the lease is held, a watcher owns its connection and closes the
// term's Lost channel the moment the session is found dead, or on a server
// that no longer takes writes (a fenced old primary); each Hold has it prove
// the session at once.
type Lease struct {
	cfg *pgx.ConnConfig

	mu   sync.Mutex
	conn *pgx.Conn // the standby's session; the watcher owns it while held
	term *leaseTerm
}

// leaseTerm is one holding of the lease and its watcher.
type leaseTerm struct {
	epoch int64
	lost  chan struct{} // closed by the watcher when the session is dead
	stop  context.CancelFunc
	done  chan struct{} // closed when the watcher has closed the connection
	// checks holds Hold's request that the session prove itself now; the
	// watcher answers it with what its probe found. Hold calls are
	// serialised by the lease's mutex, so one slot is enough.
	checks chan chan error
	// mu guards interrupt, which ends the watcher's current wait so that
	// it answers a check at once.
	mu        sync.Mutex
	interrupt context.CancelFunc
}

// check asks the watcher to probe the session now, and returns what the
// probe found, or the error of a session already lost.
func (t *leaseTerm) check(ctx context.Context) error {
	reply := make(chan error, 1)
	t.mu.Lock()
	t.checks <- reply
	if t.interrupt != nil {
		t.interrupt()
	}
	t.mu.Unlock()
	select {
	case err := <-reply:
		return err
	case <-t.done:
		select {
		case err := <-reply:
			return err
		default:
			return errors.New("the lease's session ended")
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RelayLease returns the database's relay lease. Closing the DB releases it.
func (db *DB) RelayLease() *Lease {
	return db.lease
}

func newLease(poolConn *pgx.ConnConfig) *Lease {
	cfg := poolConn.Copy()
	// A holder cut off by a partition keeps the lock until the server
	// notices the session is dead; these make that seconds, not TCP's hours.
	cfg.RuntimeParams["tcp_keepalives_idle"] = "5"
	cfg.RuntimeParams["tcp_keepalives_interval"] = "2"
	cfg.RuntimeParams["tcp_keepalives_count"] = "3"
	return &Lease{cfg: cfg}
}

// Hold reports whether this replica holds the lease, taking it when it is
// free, and the term it holds it in. The relay calls it before every
// delivery round; an error means the lease's session failed, and the lease
// is not held until a later Hold takes it again.
//
// Once begun, Hold finishes within leaseCheckTimeout even if ctx ends: a
// check or take-over cut short would close the session, and with it the
// lease, which the server frees only once it has noticed the session ended.
// A relay stopped mid-round would then find its own lock still taken when
// it flushes at shutdown, stand by, and leave its events for the next start.
func (l *Lease) Hold(ctx context.Context) (outbox.Term, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseCheckTimeout)
	defer cancel()
	if t := l.term; t != nil {
		// Each round proves the session still answers, on a server that
		// takes writes, as the watcher does when the session is quiet.
		err := t.check(ctx)
		if err == nil {
			return outbox.Term{Epoch: t.epoch, Lost: t.lost}, true, nil
		}
		t.stop()
		<-t.done
		l.term = nil
		return outbox.Term{}, false, fmt.Errorf("relay lease: %w", err)
	}
	if l.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, l.cfg)
		if err != nil {
			return outbox.Term{}, false, fmt.Errorf("relay lease: connect: %w", err)
		}
		l.conn = conn
	}
	var got bool
	if err := l.conn.QueryRow(ctx, tryLeaseSQL, relayLeaseKey).Scan(&got); err != nil {
		l.closeConn()
		return outbox.Term{}, false, fmt.Errorf("relay lease: %w", err)
	}
	if !got {
		return outbox.Term{}, false, nil
	}
	var epoch int64
	if err := l.conn.QueryRow(ctx, takeOverSQL).Scan(&epoch); err != nil {
		// Closing the session frees the lock taken above.
		l.closeConn()
		return outbox.Term{}, false, fmt.Errorf("relay lease: begin a term: %w", err)
	}
	wctx, stop := context.WithCancel(context.Background())
	t := &leaseTerm{epoch: epoch, lost: make(chan struct{}), stop: stop, done: make(chan struct{}), checks: make(chan chan error, 1)}
	go watch(wctx, l.conn, t)
	l.conn, l.term = nil, t
	return outbox.Term{Epoch: t.epoch, Lost: t.lost}, true, nil
}

// watch owns the held lease's connection until the session is found dead
// or ctx ends (Close), then closes Lost and the connection. It waits for
// anything the server sends, which to an idle session is only the notice
// that it is being ended, and after each silent leaseProbeInterval makes
// the session answer, and say it is still on a server that takes writes.
func watch(ctx context.Context, conn *pgx.Conn, t *leaseTerm) {
	defer close(t.done)
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	defer close(t.lost)
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, leaseProbeInterval)
		t.mu.Lock()
		checkPending := len(t.checks) > 0
		t.interrupt = cancel
		t.mu.Unlock()
		var err error
		if !checkPending {
			err = conn.PgConn().WaitForNotification(wctx)
		}
		t.mu.Lock()
		t.interrupt = nil
		t.mu.Unlock()
		interrupted := wctx.Err() == context.Canceled
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !pgconn.Timeout(err) && !interrupted {
			answer(t, fmt.Errorf("session lost: %w", err))
			return
		}
		err = probe(ctx, conn)
		answer(t, err)
		if err != nil {
			return
		}
	}
}

// probe makes the session answer. Alive is not enough: a fenced old
// primary (read-only) keeps its sessions, while the other replicas' relays
// take the lease on the promoted standby.
func probe(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, leaseCheckTimeout)
	defer cancel()
	var readOnly string
	if err := conn.QueryRow(ctx, readOnlySQL).Scan(&readOnly); err != nil {
		return fmt.Errorf("session lost: %w", err)
	}
	if readOnly == "on" {
		return errors.New("the server has become read-only (fenced, or a standby)")
	}
	return nil
}

// answer gives err to the check waiting, if any.
func answer(t *leaseTerm, err error) {
	select {
	case reply := <-t.checks:
		reply <- err
	default:
	}
}

// Close releases the lease by ending its session.
func (l *Lease) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.term; t != nil {
		t.stop()
		<-t.done
		l.term = nil
	}
	l.closeConn()
	return nil
}

func (l *Lease) closeConn() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.conn.Close(ctx)
	}
	l.conn = nil
}
