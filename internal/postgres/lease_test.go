package postgres

import (
	"context"
	"testing"

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
	hold("b after a released", b, true)
	hold("a after b took it", a, false)
}
