package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/sqlite"
	phonesdlaunch "github.com/phonesd/phonesd/internal/testkit/launch"
)

// backlogEvents is the outbox backlog /readyz must stay cheap with.
const backlogEvents = 1_000_000

// backlogSQL inserts backlogEvents unsent events with increasing ids in one
// statement, in either engine's SQL.
const backlogSQL = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
INSERT INTO outbox (event_id, domain, event_type, payload, created_at)
SELECT %s, 'audit', 'phone_creation-1', %s, %s FROM n`

// withBacklog returns the environment of a phonesd on b whose outbox holds
// backlogEvents events, written straight into its database before it starts
// (a million creates through the API would take minutes), and whose broker
// is unreachable, so that they stay there.
func withBacklog(t *testing.T, b backend) map[string]string {
	t.Helper()
	env := b.env(t)
	env["PHONES_DATA_DIR"] = t.TempDir()
	env["PHONES_EVENTS_URL"] = "nats://" + freeAddr(t) // nothing listens there
	began := time.Now()
	if dbURL := env["PHONES_DATABASE_URL"]; dbURL != "" {
		// The migrations run at the first start; an empty start makes them.
		s := startWith(t, map[string]string{
			"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir(), "PHONES_DATABASE_URL": dbURL,
			"PHONES_JWKS_URL": newTestKeys(t).url, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
		})
		if err := s.stop(); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		q := fmt.Sprintf(backlogSQL, backlogEvents,
			`('00000000-0000-7000-8000-' || lpad(i::text, 12, '0'))::uuid`,
			`convert_to('{"n":' || i || '}', 'UTF8')`,
			`now() - interval '1 hour'`)
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
		// A million new rows set autovacuum to work on them for seconds,
		// beside the test's timings: done now, it has nothing left to do.
		if _, err := conn.Exec(context.Background(), "VACUUM (ANALYZE) outbox"); err != nil {
			t.Fatal(err)
		}
	} else {
		// The sqlite3 program writes the rows at native speed; SQLite's Go
		// translation, under the race detector, took two minutes.
		if _, err := exec.LookPath("sqlite3"); err != nil {
			if os.Getenv("PHONES_TEST_REQUIRE_TOOLS") != "" {
				t.Fatal("sqlite3 is not installed; .ci/run installs Debian's sqlite3 package")
			}
			t.Skip("no sqlite3 program to write the backlog (Debian package sqlite3; .ci/run installs it)")
		}
		path := filepath.Join(env["PHONES_DATA_DIR"], "phones.db")
		db, err := sqlite.Open(context.Background(), path, sqlite.Options{}) // migrates
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		q := fmt.Sprintf(backlogSQL, backlogEvents,
			`printf('00000000-0000-7000-8000-%012d', i)`,
			`CAST('{"n":' || i || '}' AS BLOB)`,
			`CAST(unixepoch('now', '-1 hour') AS INTEGER) * 1000`)
		if out, err := exec.Command("sqlite3", path, "PRAGMA journal_mode=WAL;", q).CombinedOutput(); err != nil {
			t.Fatalf("sqlite3: %v\n%s", err, out)
		}
	}
	t.Logf("%d events written into the outbox in %.1fs", backlogEvents, time.Since(began).Seconds())
	return env
}

// timings records request durations and server errors from many goroutines.
type timings struct {
	mu     sync.Mutex
	d      []time.Duration
	errors []string
}

func (l *timings) add(d time.Duration, status int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d = append(l.d, d)
	if err != nil || status >= 500 {
		l.errors = append(l.errors, fmt.Sprintf("status %d, %v", status, err))
	}
}

func (l *timings) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// timedGet sends a GET and records how long the whole answer took.
func timedGet(client *http.Client, url, token string, into *timings) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	began := time.Now()
	resp, err := client.Do(req)
	status := 0
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	into.add(time.Since(began), status, err)
}

// serverDurations returns the durations phonesd logged for route, the time
// its handler took, whatever the wait of the request before it ran.
func serverDurations(logs string, route string) *timings {
	l := &timings{}
	for line := range strings.Lines(logs) {
		var entry struct {
			Msg        string  `json:"msg"`
			Route      string  `json:"route"`
			DurationMS float64 `json:"duration_ms"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "request" && entry.Route == route {
			l.d = append(l.d, time.Duration(entry.DurationMS*float64(time.Millisecond)))
		}
	}
	return l
}

// loggedDurations waits until the log after offset from holds the lines of
// n requests of route (request lines are written within logInterval of
// their answers), and returns their durations; after a deadline, those it
// holds.
func loggedDurations(t *testing.T, logs *syncBuffer, from int, route string, n int) *timings {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := serverDurations(logs.String()[from:], route)
		if len(l.d) >= n || time.Now().After(deadline) {
			return l
		}
		time.Sleep(logInterval)
	}
}

// TestReadyzStaysCheapBesideABacklog runs 32 anonymous /readyz loops
// against a phonesd whose outbox holds a million events, beside an
// authenticated client reading a phone: /readyz must cost under 5 ms and
// the client's p99 stay under 50 ms, with no 5xx anywhere.
//
// phonesd runs as a process of its own, built without the race detector,
// as in production. The machine running the test is shared, and its noise
// only ever adds latency, so the test judges what noise moves least: the
// cost of /readyz is its handler's time as phonesd logs it (the clients'
// own view adds the wait of 32 loops for two CPUs), by its median; the
// client's p99 is judged over up to five windows, and the test passes on
// the first window that meets it: under 50 ms, or, on a machine too busy
// for that, at most twice the worst p99 of the same client beside 32 loops
// of /healthz, measured before each window. A design in which health
// checks slow the API (each /readyz counted the backlog for 200 ms, and the
// readers it held made a GET wait seconds) fails every window; a busy
// moment of the machine fails one. Any 5xx in any window fails the test.
func TestReadyzStaysCheapBesideABacklog(t *testing.T) {
	bin, err := phonesdlaunch.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	forBackends(t, func(t *testing.T, b backend) {
		env := withBacklog(t, b)
		keys := newTestKeys(t)
		addr := freeAddr(t)
		env["PHONES_ADDR"] = addr
		env["PHONES_JWKS_URL"], env["PHONES_JWT_ISSUER"], env["PHONES_JWT_AUDIENCE"] = keys.url, testIssuer, testAudience
		env["PHONES_LOG_LEVEL"] = "info" // one line per request, with its duration
		// Killed at the end: a SIGTERM would wait 20 s for the relay to
		// flush to the broker that is not there.
		p := spawn(t, bin, env)
		p.waitReady(t, addr)
		base, token := "http://"+addr, keys.token(t, nil)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, base+"/accounts/v1/accounts/1/phones", strings.NewReader(`{"number": "5555-0001", "type": "MOBILE"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		created := map[string]int64{}
		resp, err := client.Do(req)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&created)
			resp.Body.Close()
		}
		if err != nil || created["id"] == 0 {
			t.Fatalf("create a phone: %v, %v", created, err)
		}
		phoneURL := fmt.Sprintf("%s/accounts/v1/accounts/1/phones/%d", base, created["id"])
		resp, err = client.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var rd struct {
			Outbox struct {
				Pending int64 `json:"pending"`
			} `json:"outbox"`
		}
		err = json.NewDecoder(resp.Body).Decode(&rd)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || rd.Outbox.Pending < backlogEvents {
			t.Fatalf("/readyz: %d, %d pending, %v; want 200 with the backlog of %d", resp.StatusCode, rd.Outbox.Pending, err, backlogEvents)
		}

		// beside runs 32 loops of GET path for a window, beside the
		// authenticated client, and returns their timings and the client's.
		const window = 2 * time.Second
		beside := func(path string) (loops, api *timings) {
			loops, api = &timings{}, &timings{}
			var stop atomic.Bool
			var wg sync.WaitGroup
			for range 32 {
				wg.Go(func() {
					for !stop.Load() {
						timedGet(client, base+path, "", loops)
					}
				})
			}
			wg.Go(func() {
				for !stop.Load() {
					timedGet(client, phoneURL, token, api)
					time.Sleep(5 * time.Millisecond)
				}
			})
			time.Sleep(window) // the window's length: a measure, not a wait for an event
			stop.Store(true)
			wg.Wait()
			return loops, api
		}
		const tries = 5
		var controlP99 time.Duration // the worst so far: the machine's noise comes and goes
		for try := 1; ; try++ {
			// The same load on /healthz, which reads nothing, shows what the
			// machine alone does to the client's p99.
			_, control := beside("/healthz")
			logged := len(p.logs.String())
			ready, api := beside("/readyz")

			served := loggedDurations(t, p.logs, logged, "/readyz", len(ready.d))
			apiP99 := api.quantile(0.99)
			controlP99 = max(controlP99, control.quantile(0.99))
			t.Logf("window %d: %d /readyz, handler median %v, p99 %v (client's view: median %v, p99 %v); %d authenticated GETs, median %v, p99 %v (worst beside /healthz: p99 %v)",
				try, len(ready.d), served.quantile(0.5), served.quantile(0.99), ready.quantile(0.5), ready.quantile(0.99),
				len(api.d), api.quantile(0.5), apiP99, controlP99)
			for _, e := range append(append(ready.errors, api.errors...), control.errors...) {
				t.Errorf("window %d: %s; want no server error", try, e)
			}
			if len(served.d) == 0 {
				t.Fatalf("window %d: no /readyz request in phonesd's log", try)
			}
			if m := served.quantile(0.5); m >= 5*time.Millisecond {
				t.Errorf("window %d: /readyz took %v in its handler (median); want under 5ms", try, m)
			}
			// 50 ms is the promise; a machine too busy to keep it beside
			// /healthz is judged against itself.
			if t.Failed() || apiP99 < 50*time.Millisecond || apiP99 <= 2*controlP99 {
				return
			}
			if try == tries {
				t.Fatalf("the authenticated client's p99 was over 50ms, and over twice its worst p99 beside /healthz, in %d windows, the last %v (%v beside /healthz)", tries, apiP99, controlP99)
			}
		}
	})
}
