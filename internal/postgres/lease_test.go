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
