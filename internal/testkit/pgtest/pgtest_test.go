package pgtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// admin returns a connection to the server's administrative database, or
// skips t as Database does.
func admin(t *testing.T) *pgx.Conn {
	t.Helper()
	if os.Getenv(EnvVar) == "" {
		t.Skip(skipReason)
	}
	conn, err := pgx.Connect(context.Background(), os.Getenv(EnvVar))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exists(t *testing.T, conn *pgx.Conn, name string) bool {
	t.Helper()
	var ok bool
	err := conn.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok)
	if err != nil {
		t.Fatalf("look for database %s: %v", name, err)
	}
	return ok
}

func TestDatabase(t *testing.T) {
	conn := admin(t)
	var name string
	t.Run("test", func(t *testing.T) {
		dbURL := Database(t)
		db, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Fatalf("connect to %s: %v", dbURL, err)
		}
		// Still connected when Database's cleanup drops the database.
		defer db.Close(context.Background())

		if err := db.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, prefix) {
			t.Errorf("current_database(): got %q; want prefix %q", name, prefix)
		}
		if at, ok := createdAt(name); !ok || time.Since(at) > time.Minute {
			t.Errorf("creation time in %q: got %v, %t; want about now", name, at, ok)
		}
		var tables int
		if err := db.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("tables in the new database: got %d; want 0", tables)
		}
		if !exists(t, conn, name) {
			t.Errorf("database %s: got absent during the test; want present", name)
		}
	})
	if name == "" {
		t.Fatal("the subtest found no database")
	}
	if exists(t, conn, name) {
		t.Errorf("database %s: got present after the test; want dropped", name)
	}
}

func TestDropsStaleDatabases(t *testing.T) {
	conn := admin(t)
	ctx := context.Background()
	stale := newName(time.Now().Add(-2 * time.Hour))
	recent := newName(time.Now().Add(-30 * time.Minute))
	for _, name := range []string{stale, recent} {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+quote(name)); err != nil {
			t.Fatalf("create database %s: %v", name, err)
		}
		t.Cleanup(func() {
			if err := drop(ctx, conn, name); err != nil {
				t.Errorf("drop database %s: %v", name, err)
			}
		})
	}

	Database(t)

	if exists(t, conn, stale) {
		t.Errorf("database %s, 2h old: got present; want dropped", stale)
	}
	if !exists(t, conn, recent) {
		t.Errorf("database %s, 30min old: got dropped; want present (its run may go on)", recent)
	}
}

func TestCreatedAt(t *testing.T) {
	at := time.Unix(1764198000, 0)
	tests := []struct {
		name   string
		wantOK bool
	}{
		{newName(at), true},
		{"phonesd_test_1764198000_a1b2c3d4", true},
		{"phonesd_test_x_a1b2c3d4", false},
		{"phonesd_test_1764198000", false},
		{"other_1764198000_a1b2c3d4", false},
	}
	for _, tt := range tests {
		got, ok := createdAt(tt.name)
		if ok != tt.wantOK || (ok && !got.Equal(at)) {
			t.Errorf("createdAt(%q): got %v, %t; want %v, %t", tt.name, got, ok, at, tt.wantOK)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		admin string
		want  string
	}{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/db?sslmode=disable"},
		{"postgresql://u:p%40ss@host/", "postgresql://u:p%40ss@host/db"},
		{"postgres://host", "postgres://host/db"},
		{"postgres://host/postgres?dbname=postgres&sslmode=disable", "postgres://host/db?sslmode=disable"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.admin, "db")
		if err != nil || got != tt.want {
			t.Errorf("withDatabase(%q): got %q, %v; want %q, nil", tt.admin, got, err, tt.want)
		}
	}
	for _, bad := range []string{"host=h password=secret", "mysql://u:secret@h/db", "postgres://u:secret@h:x/db"} {
		_, err := withDatabase(bad, "db")
		if err == nil {
			t.Errorf("withDatabase(%q): got nil error; want one", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("withDatabase(%q): error %q holds the password", bad, err)
		}
	}
	// The database name needs no escaping: Database's names are plain.
	if got, _ := withDatabase("postgres://h/x", newName(time.Now())); strings.Contains(got, "%") {
		t.Errorf("URL %q: got escapes; want none", got)
	}
}

// TestClusterFailover builds a primary with a synchronous standby, commits
// on the primary, kills it, promotes the standby and finds the commit there.
func TestClusterFailover(t *testing.T) {
	ctx := context.Background()
	primary := NewCluster(t, "primary", "synchronous_standby_names=standby1")
	standby := primary.NewStandby(t, "standby1", "sync")

	conn, err := pgx.Connect(ctx, primary.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE acked (n int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO acked VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, primary.AdminURL()); err == nil {
		t.Fatal("the killed primary still accepts connections")
	}
	promoted, err := pgx.Connect(ctx, standby.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer promoted.Close(ctx)
	var readOnly string
	if err := promoted.QueryRow(ctx, "SHOW transaction_read_only").Scan(&readOnly); err != nil || readOnly != "on" {
		t.Fatalf("standby before promotion: transaction_read_only %q, %v; want on", readOnly, err)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := promoted.QueryRow(ctx, "SELECT count(*) FROM acked").Scan(&n); err != nil || n != 1 {
		t.Fatalf("promoted standby: %d rows, %v; want the 1 the primary acknowledged", n, err)
	}
	if _, err := promoted.Exec(ctx, "INSERT INTO acked VALUES (2)"); err != nil {
		t.Errorf("promoted standby refuses a write: %v", err)
	}
}
