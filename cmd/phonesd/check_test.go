package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// check runs phonesd check with args and env, and returns what it printed
// and its error.
func check(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, append([]string{"phonesd", "check"}, args...), env, &out, &bytes.Buffer{})
	return out.String(), err
}

// TestCheckReachesNothing: phonesd check of a configuration whose hosts do
// not even resolve succeeds, and creates nothing, not even the data
// directory or the development key.
func TestCheckReachesNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
	}{
		{"development mode", map[string]string{}},
		{"production mode", map[string]string{
			"PHONES_ADDR":         "0.0.0.0:8080",
			"PHONES_DATABASE_URL": "postgres://phonesd:pw@db.invalid:5432/phonesd?sslmode=verify-full",
			"PHONES_EVENTS_URL":   "tls://nats.invalid:4222",
			"PHONES_JWKS_URL":     "https://keys.invalid/jwks.json",
			"PHONES_JWT_ISSUER":   "i", "PHONES_JWT_AUDIENCE": "a",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.invalid:4318",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			c.env["PHONES_DATA_DIR"] = dir
			began := time.Now()
			out, err := check(t, c.env)
			if err != nil {
				t.Fatalf("phonesd check: %v\n%s", err, out)
			}
			if took := time.Since(began); took > 2*time.Second {
				t.Errorf("phonesd check took %v; want it to reach nothing", took)
			}
			if !strings.Contains(out, "configuration checked") {
				t.Errorf("phonesd check printed\n%s\nwant a line saying the configuration was checked", out)
			}
			if strings.Contains(out, "pw") {
				t.Errorf("phonesd check printed the database password:\n%s", out)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after phonesd check, the data directory: %v; want it not created", err)
			}
		})
	}
}

// TestCheckWarnsAsTheStartDoes: the warnings of a start that do not stop
// it are check's too, and do not fail it.
func TestCheckWarnsAsTheStartDoes(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := check(t, map[string]string{"PHONES_DATA_DIR": dir, "PHONES_DATABSE_URL": "sqlite:x.db"})
	if err != nil {
		t.Fatalf("phonesd check: %v", err)
	}
	for _, want := range []string{"data directory is open to other users", "unknown variable ignored", "closest_known=PHONES_DATABASE_URL"} {
		if !strings.Contains(out, want) {
			t.Errorf("phonesd check printed\n%s\nwant %q", out, want)
		}
	}
}

// TestCheckConnect: phonesd check -connect reaches the database, the broker
// and the key set, says which answered, fails naming those that did not,
// and changes nothing: no migration, no stream.
func TestCheckConnect(t *testing.T) {
	dbURL := pgtest.Database(t)
	st := natstest.New(t)
	keys := newTestKeys(t)
	env := map[string]string{
		"PHONES_DATA_DIR":     t.TempDir(),
		"PHONES_DATABASE_URL": dbURL,
		"PHONES_JWKS_URL":     keys.url, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
	}
	for k, v := range natsEnv(st, st.URL) {
		env[k] = v
	}

	out, err := check(t, env, "-connect")
	if err != nil {
		t.Fatalf("phonesd check -connect: %v\n%s", err, out)
	}
	for _, want := range []string{`"msg":"database answered"`, `"msg":"broker answered"`, `"msg":"key set answered"`, "usable keys: 1", "no stream " + st.Name + " yet"} {
		if !strings.Contains(out, want) {
			t.Errorf("phonesd check -connect printed\n%s\nwant %q", out, want)
		}
	}
	if st.Info(t) != nil {
		t.Errorf("phonesd check -connect created the stream %s", st.Name)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("phonesd check -connect left %d tables in the database; want none: no migration", tables)
	}

	env["PHONES_DATABASE_URL"] = "postgres://postgres@" + freeAddr(t) + "/phonesd?sslmode=disable"
	out, err = check(t, env, "-connect")
	if err == nil || err.Error() != "check: no answer from the database" {
		t.Errorf("phonesd check -connect without a database: %v; want check: no answer from the database", err)
	}
	for _, want := range []string{`"msg":"database did not answer"`, `"msg":"broker answered"`, `"msg":"key set answered"`} {
		if !strings.Contains(out, want) {
			t.Errorf("phonesd check -connect without a database printed\n%s\nwant %q", out, want)
		}
	}

	out, err = check(t, map[string]string{"PHONES_DATA_DIR": t.TempDir()}, "-connect")
	if err != nil || strings.Count(out, "nothing to reach") != 3 {
		t.Errorf("phonesd check -connect in development mode: %v\n%s\nwant nothing to reach, three times", err, out)
	}
}

// TestCheckIssuer: phonesd check issuer checks the issuer's flags and data
// directory, as the command of a container that runs the issuer gives
// them.
func TestCheckIssuer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{"PHONES_DATA_DIR": dir, "PHONES_ADDR": "0.0.0.0:8080"}
	if out, err := check(t, env, "issuer", "-addr", "127.0.0.1:8081"); err != nil || !strings.Contains(out, "configuration checked") {
		t.Errorf("phonesd check issuer -addr 127.0.0.1:8081: %v\n%s", err, out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after phonesd check issuer, the data directory: %v; want it not created", err)
	}
	for _, args := range [][]string{{"issuer", "-port", "8081"}, {"issuer", "serve"}, {"token"}} {
		if _, err := check(t, env, args...); err == nil {
			t.Errorf("phonesd check %s: nil error; want one", strings.Join(args, " "))
		}
	}
}
