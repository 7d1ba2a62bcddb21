package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// relayLeaseKey is held, at session level, by the one replica whose relay
// delivers the outbox.
const relayLeaseKey int64 = 0x70686f6e65736403

// leaseCheckTimeout bounds each check that the lease's session is alive.
const leaseCheckTimeout = 2 * time.Second

// Lease is the right to deliver the outbox, held by one replica at a time:
// a session-level advisory lock on a connection of its own. When the holder
// dies, PostgreSQL ends its session and frees the lock, and a standby takes
// it at its next Hold.
type Lease struct {
	cfg *pgx.ConnConfig

	mu   sync.Mutex
	conn *pgx.Conn
	held bool
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
// free. The relay calls it before every delivery round; an error means the
// lease's session failed, and the lease is lost until a later Hold takes it.
func (l *Lease) Hold(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, leaseCheckTimeout)
	defer cancel()
	if l.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, l.cfg)
		if err != nil {
			return false, fmt.Errorf("relay lease: connect: %w", err)
		}
		l.conn, l.held = conn, false
	}
	var err error
	if l.held {
		// Alive is not enough: a fenced old primary (read-only) keeps its
		// sessions, while the other replicas' relays take the lease on
		// the promoted standby.
		var readOnly string
		err = l.conn.QueryRow(ctx, "SELECT current_setting('transaction_read_only')").Scan(&readOnly)
		if err == nil && readOnly == "on" {
			err = errors.New("the server has become read-only (fenced, or a standby)")
		}
	} else {
		err = l.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", relayLeaseKey).Scan(&l.held)
	}
	if err != nil {
		l.drop()
		return false, fmt.Errorf("relay lease: %w", err)
	}
	return l.held, nil
}

// Close releases the lease by ending its session.
func (l *Lease) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drop()
	return nil
}

func (l *Lease) drop() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.conn.Close(ctx)
	}
	l.conn, l.held = nil, false
}
