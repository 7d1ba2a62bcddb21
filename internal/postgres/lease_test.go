package postgres

import (
	"context"
	"testing"
	"time"

	"phonesd/internal/pgtest"
)

func TestRelayLeaseOneHolderAtATime(t *testing.T) {
	dbURL := pgtest.Database(t)
	a, b := open(t, dbURL, Options{}), open(t, dbURL, Options{})
	ctx := context.Background()
	hold := func(name string, db *DB, want bool) {
		t.Helper()
		got, err := db.RelayLease().Hold(ctx)
		if err != nil || got != want {
			t.Fatalf("%s Hold() = %v, %v; want %v", name, got, err, want)
		}
	}
	hold("a", a, true)
	hold("b", b, false)
	hold("a again", a, true)
	hold("b again", b, false)
	a.RelayLease().Close() // as when a replica dies: its session ends
	// The server frees the lock once it has noticed the session ended.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := b.RelayLease().Hold(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b did not take the lease within 5s of a releasing it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	hold("a after b took it", a, false)
}

// TestOutboxOrderLockID finds the lock a transaction holds in pg_locks by
// the ids OutboxOrderLockID gives.
func TestOutboxOrderLockID(t *testing.T) {
	ctx := context.Background()
	db := open(t, pgtest.Database(t), Options{})
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, lockOutboxOrderSQL, outboxOrderLockKey); err != nil {
		t.Fatal(err)
	}
	classid, objid := OutboxOrderLockID()
	var held int
	err = db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1 AND granted`, classid, objid).Scan(&held)
	if err != nil || held != 1 {
		t.Errorf("pg_locks rows for the outbox order lock: %d, %v; want 1", held, err)
	}
}
