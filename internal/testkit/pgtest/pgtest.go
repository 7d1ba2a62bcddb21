// Package pgtest gives each test a database of its own on the PostgreSQL
// server named by PHONES_TEST_DATABASE_URL, and tests and tools that must
// crash, replicate or fail over a server a cluster of their own.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// EnvVar names the variable holding the URL of the server's
	// administrative database, as a role that may create databases.
	EnvVar = "PHONES_TEST_DATABASE_URL"
	// prefix starts the name of every database Database creates; the
	// creation time, in Unix seconds, and a random part follow.
	prefix = "phonesd_test_"
	// staleAfter is the age past which a database named with prefix is
	// taken for the leftover of a killed run and dropped.
	staleAfter = time.Hour
	skipReason = "PostgreSQL tests skipped: set " + EnvVar + ", e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable (.ci/run sets it)"
	// timeout bounds each exchange with the server.
	timeout = 30 * time.Second
)

// Database returns the URL of a new, empty database for t, created on the server named by PHONES_TEST_DATABASE_URL and dropped when t ends. It skips t when the variable is unset.
func Database(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvVar)
	if admin == "" {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dbURL, dropDB, err := Create(ctx, admin, t.Logf)
	if err != nil {
		t.Fatalf("%s: %v", EnvVar, err)
	}
	t.Cleanup(func() {
		// A context of its own: the test may have run longer than the
		// server keeps an idle connection, and it ran with its own context.
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := dropDB(ctx); err != nil {
			t.Errorf("%v", err)
		}
	})
	return dbURL
}

// Create creates a new, empty database on the server whose administrative
// database admin names (as a role that may create databases), named as
// Database names them, and returns its URL and a function that drops it.
// Databases of that prefix older than an hour, left by killed runs, are
// dropped first; logf, when not nil, reports the ones that could not be. It
// returns an error when admin is not a PostgreSQL URL or the server refuses;
// the error never holds the URL, which may hold a password.
func Create(ctx context.Context, admin string, logf func(format string, args ...any)) (dbURL string, dropDB func(context.Context) error, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	name := newName(time.Now())
	dbURL, err = withDatabase(admin, name)
	if err != nil {
		return "", nil, err
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)

	dropStale(ctx, logf, conn, time.Now())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quote(name)); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	dropDB = func(ctx context.Context) error {
		// A connection of its own: the one above is long closed.
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		defer conn.Close(ctx)
		if err := drop(ctx, conn, name); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	return dbURL, dropDB, nil
}

// newName returns a database name for Database, created at created.
func newName(created time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + strconv.FormatInt(created.Unix(), 10) + "_" + hex.EncodeToString(b[:])
}

// createdAt returns the creation time embedded in a name made by newName, and
// whether there is one.
func createdAt(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return time.Time{}, false
	}
	secs, _, ok := strings.Cut(rest, "_")
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// dropStale drops the databases named with prefix that are older than
// staleAfter. Failures are only logged: another run may be dropping the
// same database at the same time, and none of them concerns the caller.
func dropStale(ctx context.Context, logf func(format string, args ...any), conn *pgx.Conn, now time.Time) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, prefix)
	if err != nil {
		logf("list test databases: %v", err)
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		logf("list test databases: %v", err)
		return
	}
	for _, name := range names {
		if at, ok := createdAt(name); ok && now.Sub(at) > staleAfter {
			if err := drop(ctx, conn, name); err != nil {
				logf("drop stale database %s: %v", name, err)
			}
		}
	}
}

// drop drops the database name, ending the sessions still connected to it.
func drop(ctx context.Context, conn *pgx.Conn, name string) error {
	_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+quote(name)+" WITH (FORCE)")
	return err
}

func quote(name string) string { return pgx.Identifier{name}.Sanitize() }

// withDatabase returns the URL admin with its database replaced by name.
func withDatabase(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL is not quoted: it may hold a password.
		return "", fmt.Errorf("not a postgres:// or postgresql:// URL")
	}
	u.Path = "/" + name
	u.RawPath = ""
	q := u.Query()
	if q.Has("dbname") || q.Has("database") {
		// Either would override the path.
		q.Del("dbname")
		q.Del("database")
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// Name returns a fresh database name, made as Database makes them, for a
// test whose subject creates the database itself (such as the README's
// createdb), and drops the database when t ends if it exists by then. It
// skips t when the variable is unset.
func Name(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvVar)
	if admin == "" {
		t.Skip(skipReason)
	}
	name := newName(time.Now())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if err := drop(ctx, conn, name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}
