package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"
)

// lockDatabase blocks every write to phones from another connection, as a
// stuck writer would, until the returned function is called.
func lockDatabase(t *testing.T, s *phonesd) (release func()) {
	t.Helper()
	ctx := context.Background()
	var undo func()
	if s.databaseURL != "" {
		conn, err := pgx.Connect(ctx, s.databaseURL)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE phones IN EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		undo = func() { _ = tx.Rollback(ctx); conn.Close(ctx) }
	} else {
		db, err := sql.Open("sqlite", filepath.Join(s.dataDir, "phones.db"))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		undo = func() { _, _ = conn.ExecContext(ctx, "ROLLBACK"); conn.Close(); db.Close() }
	}
	var once sync.Once
	release = func() { once.Do(undo) }
	t.Cleanup(release)
	return release
}

func TestCreatePhoneStorageFailureAnswers500AndRecovers(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, map[string]string{"PHONES_STORAGE_TIMEOUT": "1s"})
		release := lockDatabase(t, s)
		began := time.Now()
		r := s.create(1, okBody)
		took := time.Since(began)
		if r.status != 500 || string(r.body) != `{"message":"Error creating phone number"}` {
			t.Fatalf("status %d body %s; want 500 with the contract's body", r.status, r.body)
		}
		if took > 4*time.Second {
			t.Errorf("answered after %v; want within a few seconds of the 1s storage timeout", took)
		}
		if !strings.Contains(s.logs.String(), "create phone failed") {
			t.Errorf("the log does not record the failure")
		}
		release()
		createdID(t, s.create(1, okBody))
		if n := len(s.delivered()); n != 1 {
			t.Errorf("%d events; want 1: none for the failed create", n)
		}
	})
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		// Long enough that the held create waits for the lock for the whole
		// test (on SQLite, the group commit's own 5s bounds it).
		s := b.start(t, map[string]string{"PHONES_STORAGE_TIMEOUT": "30s", "PHONES_DB_STATEMENT_TIMEOUT": "30s"})
		release := lockDatabase(t, s)
		answer := make(chan response, 1)
		go func() { answer <- s.create(1, okBody) }()
		s.waitCreatesHeld(1)
		stopped := make(chan error, 1)
		go func() { stopped <- s.stop() }()
		s.waitStopping()
		release()
		r := <-answer
		createdID(t, r)
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("run returned %v; want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("phonesd did not stop")
		}
		if evs := readEvents(t, filepath.Join(s.dataDir, eventsFile)); len(evs) != 1 {
			t.Errorf("%d events after shutdown; want the in-flight create's event flushed", len(evs))
		}
	})
}

func TestRequestLog(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		createdID(t, s.create(3, `{"number": "11987654321", "type": "MOBILE"}`, [2]string{"x-cid", "log-check-1"}))
		s.waitLogged("log-check-1", 10*time.Second) // written within logInterval
		var line map[string]any
		for _, l := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(l, "log-check-1") {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("log line %q is not JSON: %v", l, err)
				}
			}
		}
		want := map[string]any{"method": "POST", "route": "/accounts/v1/accounts/{accountId}/phones", "status": float64(200), "tenant": testTenant}
		for k, v := range want {
			if line[k] != v {
				t.Errorf("log %s = %v; want %v", k, line[k], v)
			}
		}
		if _, ok := line["duration_ms"]; !ok {
			t.Errorf("log line %v has no duration_ms", line)
		}
		logs := s.logs.String()
		if strings.Contains(logs, "11987654321") || strings.Contains(logs, s.token[:40]) {
			t.Errorf("the log holds a phone number or a token")
		}
	})
}

func TestDevelopmentMode(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": dir}
	s := startWith(t, vars)
	out := s.stderr.String()
	if !strings.Contains(out, "DEVELOPMENT MODE") || !strings.Contains(out, "curl") {
		t.Fatalf("development start printed:\n%s", out)
	}
	m := regexp.MustCompile(`export TOKEN=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no token printed:\n%s", out)
	}
	s.token = m[1]
	createdID(t, s.create(123, `{"number": "91234-5678", "type": "MOBILE", "area_code": 11}`))
	if strings.Count(s.logs.String()+out, m[1]) != 1 {
		t.Errorf("the token was printed more than once")
	}

	var minted bytes.Buffer
	if err := run(context.Background(), []string{"phonesd", "token", "-tenant", "TN-dev", "-account", "5"}, vars, &minted, &bytes.Buffer{}); err != nil {
		t.Fatalf("token command: %v", err)
	}
	s.token = strings.TrimSpace(minted.String())
	createdID(t, s.create(5, okBody))
	if r := s.create(6, okBody); r.status != http.StatusForbidden {
		t.Errorf("account token on another account: status %d; want 403", r.status)
	}
}

// TestConfigurationErrors: each bad configuration stops the start with one
// line naming what is wrong, and phonesd check with the very same line.
func TestConfigurationErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"development mode off loopback", map[string]string{"PHONES_ADDR": "0.0.0.0:8080"}, "loopback"},
		{"development mode with PostgreSQL", map[string]string{"PHONES_DATABASE_URL": "postgres://localhost/db"}, "PostgreSQL"},
		{"JWKS without issuer", map[string]string{"PHONES_JWKS_URL": "https://keys.example/jwks", "PHONES_JWT_AUDIENCE": "a"}, "PHONES_JWT_ISSUER"},
		{"JWKS over plain http", map[string]string{"PHONES_JWKS_URL": "http://keys.example/jwks", "PHONES_JWT_ISSUER": "i", "PHONES_JWT_AUDIENCE": "a"}, "PHONES_JWKS_URL"},
		{"relative events file", map[string]string{"PHONES_EVENTS_URL": "file://events.jsonl"}, "PHONES_EVENTS_URL"},
		{"unknown database scheme", map[string]string{"PHONES_DATABASE_URL": "mysql://x"}, "PHONES_DATABASE_URL"},
		{"bad duration", map[string]string{"PHONES_JWT_LEEWAY": "soon"}, "PHONES_JWT_LEEWAY"},
		{"issuer and audience without a key set", map[string]string{"PHONES_JWT_ISSUER": "i", "PHONES_JWT_AUDIENCE": "a"}, "PHONES_JWKS_URL"},
		{"leeway without a key set", map[string]string{"PHONES_JWT_LEEWAY": "10s"}, "PHONES_JWKS_URL"},
		{"token lifetime without a key set", map[string]string{"PHONES_JWT_MAX_TTL": "1h"}, "PHONES_JWKS_URL"},
		{"key set age without a key set", map[string]string{"PHONES_JWKS_MAX_STALE": "1h"}, "PHONES_JWKS_URL"},
		{"PostgreSQL in clear text to another host", map[string]string{
			"PHONES_JWKS_URL": "https://keys.example/jwks", "PHONES_JWT_ISSUER": "i", "PHONES_JWT_AUDIENCE": "a",
			"PHONES_DATABASE_URL": "postgres://phonesd:pw-secret@db.example:5432/phonesd?sslmode=prefer",
		}, "sslmode"},
		{"bad insecure transport switch", map[string]string{"PHONES_ALLOW_INSECURE_TRANSPORT": "maybe"}, "PHONES_ALLOW_INSECURE_TRANSPORT"},
		// Zero cannot mean "none" for these, and once meant another default.
		{"no storage timeout", map[string]string{"PHONES_STORAGE_TIMEOUT": "0"}, "PHONES_STORAGE_TIMEOUT: want a positive duration such as 1500ms"},
		{"no idempotency TTL", map[string]string{"PHONES_IDEMPOTENCY_TTL": "0s"}, "PHONES_IDEMPOTENCY_TTL: want a positive duration"},
		{"no outbox retention", map[string]string{"PHONES_OUTBOX_RETENTION": "0"}, "PHONES_OUTBOX_RETENTION: want a positive duration such as 168h"},
		{"no statement timeout", map[string]string{"PHONES_DB_STATEMENT_TIMEOUT": "0"}, "PHONES_DB_STATEMENT_TIMEOUT: want a positive duration"},
		{"no leeway", map[string]string{"PHONES_JWT_LEEWAY": "0"}, "PHONES_JWT_LEEWAY: want a positive duration"},
		{"database URL for a standby", map[string]string{
			"PHONES_JWKS_URL": "https://keys.example/jwks", "PHONES_JWT_ISSUER": "i", "PHONES_JWT_AUDIENCE": "a",
			"PHONES_DATABASE_URL": "postgres://phonesd:pw-secret@127.0.0.1:5432/phonesd?target_session_attrs=standby",
		}, "PHONES_DATABASE_URL: open postgres: target_session_attrs=standby"},
		{"trace endpoint without a scheme", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"data directory that is a file", map[string]string{"PHONES_DATA_DIR": file}, "is not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"PHONES_DATA_DIR": dir, "PHONES_ADDR": "127.0.0.1:0"}
			for k, v := range c.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, []string{"phonesd"}, env, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("run: %v; want one line mentioning %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "pw-secret") {
				t.Errorf("run: %v; the error holds the password", err)
			}
			checked := run(ctx, []string{"phonesd", "check"}, env, &bytes.Buffer{}, &bytes.Buffer{})
			if err != nil && (checked == nil || checked.Error() != err.Error()) {
				t.Errorf("phonesd check: %v; want the start's error, %v", checked, err)
			}
		})
	}
}

func TestNotReadyUntilKeySetLoaded(t *testing.T) {
	keys := newTestKeys(t)
	var available atomic.Bool
	jwks := keys.servedBehind(t, available.Load)
	s := launch(t, map[string]string{
		"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir(),
		"PHONES_JWKS_URL": jwks, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
	})
	s.token = keys.token(t, nil)
	if r := s.do(http.MethodGet, "/readyz", ""); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "keys") {
		t.Fatalf("/readyz before the key set: %d %s; want 503 naming the keys", r.status, r.body)
	}
	// Not the client's fault: 503 with Retry-After, not a 401 that would
	// blame its token.
	if r := s.create(1, okBody); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
		string(r.body) != `{"message":"Token signing keys are not loaded yet, retry later"}` {
		t.Errorf("create before the key set: status %d Retry-After %q %s; want 503 with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
	}
	available.Store(true)
	s.waitFor("/readyz")
	createdID(t, s.create(1, okBody))
}
