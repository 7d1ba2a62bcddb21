package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

func TestOpenRefusesReadOnlyTargets(t *testing.T) {
	for _, attrs := range []string{"read-only", "standby", "prefer-standby"} {
		t.Run(attrs, func(t *testing.T) {
			_, err := Open(context.Background(), "postgres://u@127.0.0.1:1,127.0.0.1:2/db?target_session_attrs="+attrs, Options{})
			if err == nil || !strings.Contains(err.Error(), "target_session_attrs="+attrs) {
				t.Errorf("Open: got error %v; want one naming target_session_attrs=%s", err, attrs)
			}
		})
	}
}

func TestDescribeNamesEveryHost(t *testing.T) {
	cfg, err := pgx.ParseConfig("postgres://u:secret@h1:5432,h2:5433/db?sslmode=prefer")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(cfg), "postgres h1:5432,h2:5433/db"; got != want {
		t.Errorf("describe: got %q; want %q", got, want)
	}
}

// createOne stores one phone through the store's group commit.
func createOne(ctx context.Context, db *DB, number string) (phone.Phone, error) {
	p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: &number, Type: new("MOBILE")})
	if err != nil {
		return phone.Phone{}, err
	}
	return db.CreatePhone(ctx, phone.Creation{Phone: p, EventID: uuid.NewString()})
}

// TestOpenSkipsStandby names the standby first in a multi-host URL: the
// store must connect to the primary behind it, and refuse a URL whose only
// host is a standby.
func TestOpenSkipsStandby(t *testing.T) {
	ctx := context.Background()
	primary := pgtest.NewCluster(t, "primary")
	if _, err := primary.CreateDatabase(ctx, "phonesd"); err != nil {
		t.Fatal(err)
	}
	standby := primary.NewStandby(t, "standby1", "async")
	both := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/phonesd?sslmode=disable", standby.Port, primary.Port)
	db := open(t, both, Options{})
	if _, err := createOne(ctx, db, "1111-1111"); err != nil {
		t.Fatalf("create through a URL naming the standby first: %v", err)
	}
	var port int
	if err := db.pool.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil || port != primary.Port {
		t.Errorf("pool connected to port %d (%v); want the primary's, %d", port, err, primary.Port)
	}

	_, err := Open(ctx, standby.URL("phonesd"), Options{})
	if err == nil || !strings.Contains(err.Error(), "read only") {
		t.Errorf("Open on a standby alone: got error %v; want one saying the server is read only", err)
	}
}

// TestStandbyGuardDropsFencedConnections fences the primary as a failover
// tool does to an old primary it cannot stop (default_transaction_read_only
// on): the first refused write must drop the pool's connections and the
// relay lease, and once the server accepts writes again the store must
// work without a restart.
func TestStandbyGuardDropsFencedConnections(t *testing.T) {
	ctx := context.Background()
	c := pgtest.NewCluster(t, "fenced")
	dbURL, err := c.CreateDatabase(ctx, "phonesd")
	if err != nil {
		t.Fatal(err)
	}
	db := open(t, dbURL, Options{})
	if _, err := createOne(ctx, db, "1111-1111"); err != nil {
		t.Fatal(err)
	}
	if _, held, err := db.RelayLease().Hold(ctx); !held || err != nil {
		t.Fatalf("Hold: %v, %v; want true", held, err)
	}
	// Idle connections beside the one the refused write will use: the
	// guard must drop them too, not only the one whose transaction failed.
	var conns []*pgxpool.Conn
	for range 3 {
		conn, err := db.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	for _, conn := range conns {
		conn.Release()
	}
	if n := db.pool.Stat().IdleConns(); n < 3 {
		t.Fatalf("%d idle connections in the pool; want 3 or more", n)
	}

	admin, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	setReadOnly := func(on bool) {
		t.Helper()
		// The session's own setting first, so that it can still change
		// the server's whatever the file says.
		stmts := []string{"SET default_transaction_read_only = off", "ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"}
		if !on {
			stmts[1] = "ALTER SYSTEM RESET default_transaction_read_only"
		}
		for _, s := range stmts {
			if _, err := admin.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		// pg_reload_conf only signals the postmaster. A new session has
		// the setting once the postmaster has reloaded, and by then it has
		// signalled every session, which each heeds before its next
		// statement.
		want := map[bool]string{true: "on", false: "off"}[on]
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var got string
			probe, err := pgx.Connect(ctx, c.AdminURL())
			if err == nil {
				err = probe.QueryRow(ctx, "SHOW default_transaction_read_only").Scan(&got)
				probe.Close(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("default_transaction_read_only %s in a new session 10s after the reload; want %s", got, want)
			}
		}
	}

	setReadOnly(true)
	_, err = createOne(ctx, db, "2222-2222")
	if err == nil || !strings.Contains(err.Error(), readOnlyTransaction) {
		t.Fatalf("create on the fenced server: got error %v; want SQLSTATE %s", err, readOnlyTransaction)
	}
	// A connection released for destruction is closed in the background.
	for deadline := time.Now().Add(2 * time.Second); db.pool.Stat().TotalConns() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections left in the pool 2s after a write was refused as read-only; want 0", db.pool.Stat().TotalConns())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, held, err := db.RelayLease().Hold(ctx); held || err == nil {
		t.Errorf("Hold on the fenced server: %v, %v; want false and an error", held, err)
	}
	if err := db.Ping(ctx); err == nil {
		t.Error("Ping while the only server is read-only: got nil; want an error (no connection is made to it)")
	}

	setReadOnly(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := createOne(ctx, db, "3333-3333")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create after the fence was lifted: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, held, err := db.RelayLease().Hold(ctx); !held || err != nil {
		t.Errorf("Hold after the fence was lifted: %v, %v; want true", held, err)
	}
}
