package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/phonesd/phonesd/internal/migration"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/testkit/storetest"
)

func openTemp(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openTemp(t, filepath.Join(t.TempDir(), "phones.db"))
	})
}

func TestPing(t *testing.T) {
	db := openTemp(t, filepath.Join(t.TempDir(), "phones.db"))
	if err := db.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: got error %v; want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping with cancelled ctx: got error %v; want context.Canceled", err)
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "missing", "phones.db"), Options{})
	if err == nil {
		t.Fatal("Open: got nil error; want one")
	}
}

// TestOddPath checks that a path holding URI syntax still names the file.
func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%20d")
	path := filepath.Join(dir, "phones.db")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	db := openTemp(t, path)
	var file string
	if err := db.writer.QueryRow("SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file); err != nil {
		t.Fatal(err)
	}
	if file != path {
		t.Errorf("database file: got %q; want %q", file, path)
	}
}

// TestPragmas checks the durability settings on every connection of both
// pools, not just the first.
func TestPragmas(t *testing.T) {
	ctx := context.Background()
	db := openTemp(t, filepath.Join(t.TempDir(), "phones.db"))
	pools := []struct {
		name  string
		pool  *sql.DB
		conns int
	}{
		{"writer", db.writer, 1},
		{"reader", db.reader, 3},
	}
	for _, p := range pools {
		t.Run(p.name, func(t *testing.T) {
			// Holding each connection forces the pool to open the next one.
			for i := range p.conns {
				conn, err := p.pool.Conn(ctx)
				if err != nil {
					t.Fatalf("conn %d: %v", i, err)
				}
				defer conn.Close()
				checks := []struct {
					pragma string
					want   string
				}{
					{"journal_mode", "wal"},
					{"synchronous", "2"}, // FULL
					{"foreign_keys", "1"},
					{"busy_timeout", "5000"},
				}
				if p.name == "writer" {
					// Statement journals of multi-row inserts stay in memory.
					checks = append(checks, struct {
						pragma string
						want   string
					}{"temp_store", "2"})
				}
				for _, c := range checks {
					var got string
					if err := conn.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
						t.Fatalf("conn %d: PRAGMA %s: %v", i, c.pragma, err)
					}
					if got != c.want {
						t.Errorf("conn %d: PRAGMA %s: got %q; want %q", i, c.pragma, got, c.want)
					}
				}
			}
		})
	}
}

func TestReaderIsReadOnly(t *testing.T) {
	db := openTemp(t, filepath.Join(t.TempDir(), "phones.db"))
	if _, err := db.reader.Exec("DELETE FROM outbox"); err == nil {
		t.Error("DELETE through the reader pool: got nil error; want one")
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "phones.db")

	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: new("1234-5678"), Type: new("MOBILE")})
	if err != nil {
		t.Fatal(err)
	}
	created, err := db.CreatePhone(ctx, phone.Creation{Phone: p, EventID: "e1"})
	if err != nil {
		t.Fatalf("CreatePhone: %v", err)
	}
	before := appliedMigrations(t, db)
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = openTemp(t, path)
	got, err := db.Phone(ctx, "tenant-a", 1, created.ID)
	if err != nil {
		t.Fatalf("Phone after reopen: got error %v; want nil", err)
	}
	if got.Number != created.Number || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("Phone after reopen: got %+v; want %+v", got, created)
	}
	if n, _, err := db.OutboxStats(ctx); err != nil || n != 1 {
		t.Errorf("OutboxStats after reopen: got %d, %v; want 1, nil", n, err)
	}
	after := appliedMigrations(t, db)
	if len(after) != len(before) {
		t.Fatalf("applied migrations: got %v; want %v", after, before)
	}
	for v, at := range before {
		if after[v] != at {
			t.Errorf("migration %d applied_at: got %d; want %d (not re-applied)", v, after[v], at)
		}
	}
	migrations, err := migration.Read(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(migrations) {
		t.Errorf("applied migrations: got %d; want %d", len(after), len(migrations))
	}
}

// appliedMigrations returns applied_at by version.
func appliedMigrations(t *testing.T, db *DB) map[int]int64 {
	t.Helper()
	rows, err := db.reader.Query("SELECT version, applied_at FROM schema_migrations")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	applied := make(map[int]int64)
	for rows.Next() {
		var v int
		var at int64
		if err := rows.Scan(&v, &at); err != nil {
			t.Fatal(err)
		}
		applied[v] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return applied
}
