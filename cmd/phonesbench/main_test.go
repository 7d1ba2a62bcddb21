package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// runBench runs the whole program with args and returns its JSON report.
func runBench(t *testing.T, args ...string) report {
	t.Helper()
	return runBenchOutput(t, args...).report
}

// benchOutput is what a run of the program reported: its JSON, and its
// printed report.
type benchOutput struct {
	report
	stdout string
}

// runBenchOutput is runBench that also returns the printed report.
func runBenchOutput(t *testing.T, args ...string) benchOutput {
	t.Helper()
	if testing.Short() {
		t.Skip("the benchmark's smoke runs build and start phonesd: skipped with -short")
	}
	jsonPath := filepath.Join(t.TempDir(), "results.json")
	args = append([]string{"phonesbench", "--dir", t.TempDir(), "--json", jsonPath}, args...)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("stdout:\n%s", stdout.String())
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("--json file is not a report: %v\n%s", err, b)
	}
	if !strings.Contains(stdout.String(), "creates/s") {
		t.Errorf("stdout has no results table:\n%s", stdout.String())
	}
	return benchOutput{rep, stdout.String()}
}

// checkRun checks that every level of run created phones, measured the
// floor, and that the storage's commit latency was measured.
func checkRun(t *testing.T, run runResult, backend string, preload int) {
	t.Helper()
	if run.Backend != backend || run.Preload != preload {
		t.Errorf("run is %s preload %d; want %s preload %d", run.Backend, run.Preload, backend, preload)
	}
	if run.Storage == nil || run.Storage.P50ms <= 0 || run.Storage.P99ms < run.Storage.P50ms {
		t.Errorf("%s: storage %+v; want a commit latency > 0", run.label(), run.Storage)
	}
	if len(run.Levels) != 1 {
		t.Fatalf("%s: %d levels; want 1", run.label(), len(run.Levels))
	}
	l := run.Levels[0]
	if l.Concurrency != 2 {
		t.Errorf("%s: concurrency %d; want 2", run.label(), l.Concurrency)
	}
	for _, c := range []struct {
		name   string
		p      phaseResult
		status string
	}{{"creates", l.Creates, "200"}, {"floor", l.Floor, "400"}} {
		if c.p.PerSecond <= 0 {
			t.Errorf("%s %s: %v per second; want > 0", run.label(), c.name, c.p.PerSecond)
		}
		if len(c.p.Statuses) != 1 || c.p.Statuses[c.status] == 0 || c.p.TransportErrors != 0 {
			t.Errorf("%s %s: statuses %v, %d transport errors (%s); want only %s", run.label(), c.name, c.p.Statuses, c.p.TransportErrors, c.p.FirstError, c.status)
		}
		if c.p.P50ms <= 0 || c.p.P99ms < c.p.P50ms || c.p.MaxMs < c.p.P99ms {
			t.Errorf("%s %s: latencies p50 %v p99 %v max %v; want 0 < p50 <= p99 <= max", run.label(), c.name, c.p.P50ms, c.p.P99ms, c.p.MaxMs)
		}
		if c.p.CPUSeconds <= 0 || c.p.CPUPerRequestMicros <= 0 {
			t.Errorf("%s %s: phonesd's CPU %vs, %vµs a request; want both > 0", run.label(), c.name, c.p.CPUSeconds, c.p.CPUPerRequestMicros)
		}
		if c.p.ClientCPUPerRequestMicros <= 0 || c.p.IdlePercent < 0 || c.p.IdlePercent > 100 {
			t.Errorf("%s %s: the client's CPU %vµs a request, machine idle %v%%; want > 0, and 0 to 100", run.label(), c.name, c.p.ClientCPUPerRequestMicros, c.p.IdlePercent)
		}
	}
	if l.Ratio <= 0 {
		t.Errorf("%s: ratio %v; want > 0", run.label(), l.Ratio)
	}
	if l.RelayBehind != 0 {
		t.Errorf("%s: relay %d events behind; want 0", run.label(), l.RelayBehind)
	}
	if l.PeakRSSBytes <= 0 {
		t.Errorf("%s: peak RSS %d; want > 0", run.label(), l.PeakRSSBytes)
	}
}

func TestSmokeSQLite(t *testing.T) {
	rep := runBench(t, "--duration", "2s", "--warmup", "500ms", "--concurrency", "2", "--commits", "50")
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs; want 1", len(rep.Runs))
	}
	checkRun(t, rep.Runs[0], "sqlite", 0)
}

func TestSmokePostgres(t *testing.T) {
	admin := os.Getenv(pgtest.EnvVar)
	if admin == "" {
		t.Skip("PostgreSQL smoke run skipped: set PHONES_TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable (.ci/run sets it)")
	}
	rep := runBench(t, "--backend", "postgres", "--postgres-url", admin, "--duration", "2s", "--warmup", "500ms", "--concurrency", "2", "--commits", "50")
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs; want 1", len(rep.Runs))
	}
	checkRun(t, rep.Runs[0], "postgres", 0)
}

// TestSmokeReplicas shares one database and the load between two
// replicas: both must serve creates, and the PostgreSQL figures of the
// level must have been measured.
func TestSmokeReplicas(t *testing.T) {
	admin := os.Getenv(pgtest.EnvVar)
	if admin == "" {
		t.Skip("PostgreSQL smoke run skipped: set PHONES_TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable (.ci/run sets it)")
	}
	rep := runBench(t, "--backend", "postgres", "--postgres-url", admin, "--replicas", "2", "--duration", "2s", "--warmup", "500ms", "--concurrency", "2", "--commits", "50")
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs; want 1", len(rep.Runs))
	}
	run := rep.Runs[0]
	checkRun(t, run, "postgres", 0)
	s := run.Levels[0].Scale
	switch {
	case run.Replicas != 2 || s == nil || s.Replicas != 2:
		t.Fatalf("replicas %d, scale %+v; want 2 and 2", run.Replicas, s)
	case s.Creates <= 0 || s.Batches <= 0 || s.Batches > s.Creates || s.PhonesPerBatch < 1:
		t.Errorf("creates %d in %d batches (%.1f per batch); want creates >= batches > 0", s.Creates, s.Batches, s.PhonesPerBatch)
	case s.LockSamples <= 0 || s.LockHeldShare <= 0 || s.LockHeldShare > 1 || s.LockWaitedShare < 0 || s.LockWaitedShare > 1:
		t.Errorf("ordering locks: %d samples, held in %.2f and waited for in %.2f of them; want samples, a held share in (0, 1] and a waited share in [0, 1]", s.LockSamples, s.LockHeldShare, s.LockWaitedShare)
	case s.CommitsPerSecond <= 0 || s.WALBytesPerCreate <= 0 || run.Levels[0].Creates.CPUPerRequestMicros <= 0:
		t.Errorf("commits/s %.0f, WAL bytes per create %.0f, phonesd CPU per create %.0f µs; want each > 0", s.CommitsPerSecond, s.WALBytesPerCreate, run.Levels[0].Creates.CPUPerRequestMicros)
	}
	if f := run.Footprint; f == nil || f.Phones <= 0 || len(f.Relations) < 4 {
		t.Errorf("footprint %+v; want the phones and outbox tables and their indexes", f)
	}
}

// TestSmokeHA measures both --ha topologies on private servers: each must
// create, deliver its events to its stream and measure their lag.
func TestSmokeHA(t *testing.T) {
	if os.Getenv(pgtest.EnvVar) == "" || os.Getenv(natstest.EnvVar) == "" {
		t.Skip("--ha smoke run skipped, as the PostgreSQL and NATS tests are: set PHONES_TEST_DATABASE_URL and PHONES_TEST_NATS_URL (.ci/run sets them)")
	}
	if _, err := pgtest.ClusterTools(); err != nil {
		t.Skip(err)
	}
	if _, err := natstest.ServerBinary(); err != nil {
		t.Skip(err)
	}
	rep := runBench(t, "--ha", "--duration", "1s", "--warmup", "200ms", "--concurrency", "2", "--commits", "20")
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs; want 2 (single, ha)", len(rep.Runs))
	}
	for i, topo := range []string{topologySingle, topologyHA} {
		run := rep.Runs[i]
		if run.Topology != topo {
			t.Errorf("run %d: topology %q; want %q", i, run.Topology, topo)
		}
		checkRun(t, run, "postgres", 0)
		if lag := run.Levels[0].DeliveryLag; lag == nil || lag.Events <= 0 || lag.P50ms <= 0 {
			t.Errorf("%s: delivery lag %+v; want events measured", run.label(), lag)
		}
	}
}

// TestGrowth runs empty, then preloaded, storage: the preload goes through
// the store's batch method and leaves no event for the relay.
func TestGrowth(t *testing.T) {
	rep := runBench(t, "--duration", "1s", "--warmup", "200ms", "--concurrency", "2", "--commits", "20",
		"--preload", "3000", "--preload-batch", "1000", "--accounts", "100", "--growth")
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs; want 2 (empty, preloaded)", len(rep.Runs))
	}
	checkRun(t, rep.Runs[0], "sqlite", 0)
	checkRun(t, rep.Runs[1], "sqlite", 3000)
	if rep.Runs[1].PreloadSeconds <= 0 {
		t.Errorf("preload took %vs; want > 0", rep.Runs[1].PreloadSeconds)
	}
}

// TestBaseline builds phonesd at another revision (here the same one) and
// measures both, alternating over two rounds.
func TestBaseline(t *testing.T) {
	rep := runBench(t, "--baseline-ref", "HEAD", "--rounds", "2", "--duration", "1s", "--warmup", "200ms", "--concurrency", "2", "--commits", "20")
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs; want 2 (the baseline, this build)", len(rep.Runs))
	}
	if !strings.HasPrefix(rep.Runs[0].Build, "baseline ") || rep.Runs[1].Build != "this" {
		t.Errorf("builds %q and %q; want the baseline, then this", rep.Runs[0].Build, rep.Runs[1].Build)
	}
	for _, run := range rep.Runs {
		checkRun(t, run, "sqlite", 0)
		if n := len(run.Levels[0].Rounds); n != 2 {
			t.Errorf("%s: %d rounds kept; want 2", run.Build, n)
		}
	}
}

func TestParseOptions(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		want string // part of the error; empty for none
	}{
		{"defaults", nil, ""},
		{"smoke", []string{"--duration", "5s", "--warmup", "1s", "--concurrency", "4"}, ""},
		{"levels", []string{"--concurrency", "1,16,64,256"}, ""},
		{"zero concurrency", []string{"--concurrency", "0"}, "want integers"},
		{"unknown backend", []string{"--backend", "mysql"}, "want sqlite or postgres"},
		{"postgres without server", []string{"--backend", "sqlite,postgres"}, "--postgres-url"},
		{"growth without preload", []string{"--growth"}, "--preload"},
		{"url without token", []string{"--url", "http://127.0.0.1:8080"}, "--token"},
		{"token without url", []string{"--token", "x"}, "--url"},
		{"url with preload", []string{"--url", "http://127.0.0.1:8080", "--token", "x", "--preload", "10"}, "--preload"},
		{"env managed by the bench", []string{"--env", "PHONES_ADDR=0.0.0.0:1"}, "set by the bench"},
		{"env not phonesd's", []string{"--env", "HOME=/"}, "PHONES_NAME=VALUE or a Go runtime variable"},
		{"env of phonesd", []string{"--env", "PHONES_DB_MAX_CONNS=32", "--env", "GOMAXPROCS=4", "--env", "GOGC=200"}, ""},
		{"zero duration", []string{"--duration", "0s"}, "--duration"},
		{"baseline, rounds", []string{"--baseline-ref", "main", "--rounds", "3"}, ""},
		{"zero rounds", []string{"--rounds", "0"}, "--rounds"},
		{"url with a baseline", []string{"--url", "http://127.0.0.1:8080", "--token", "x", "--baseline-ref", "main"}, "--baseline-ref"},
		{"replicas on SQLite", []string{"--replicas", "3"}, "--replicas"},
		{"replicas of a running phonesd", []string{"--url", "http://127.0.0.1:8080", "--token", "x", "--replicas", "2"}, "--replicas"},
		{"too many replicas", []string{"--replicas", "17"}, "--replicas"},
		{"ha needs no server URL", []string{"--ha"}, ""},
		{"ha with SQLite", []string{"--ha", "--backend", "sqlite"}, "--ha"},
		{"ha with three replicas", []string{"--ha", "--replicas", "3"}, ""},
		{"one and three replicas", []string{"--ha", "--replicas", "1,3"}, ""},
		{"replicas given twice", []string{"--ha", "--replicas", "3,3"}, "--replicas"},
		{"limit", []string{"--limit", "--baseline-ref", "main", "--rounds", "3"}, ""},
		{"limit on a preload", []string{"--limit", "--preload", "10"}, "--limit"},
		{"limit with ha", []string{"--limit", "--ha"}, "--limit"},
		{"limit of a running phonesd", []string{"--limit", "--url", "http://127.0.0.1:8080", "--token", "x"}, "--limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOptions(tc.args, noEnv, &bytes.Buffer{})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got error %v; want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got error %v; want one containing %q", err, tc.want)
			}
		})
	}
	o, err := parseOptions(nil, func(k string) string {
		if k == postgresEnv {
			return "postgres://bench@127.0.0.1/postgres"
		}
		return ""
	}, &bytes.Buffer{})
	if err != nil || o.postgresURL != "postgres://bench@127.0.0.1/postgres" {
		t.Errorf("postgres URL %q, error %v; want $%s's value", o.postgresURL, err, postgresEnv)
	}
}

func TestNumbersAreUniqueDigits(t *testing.T) {
	s, err := newNumberSource(15)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 1000 {
		n := string(s.appendNext(nil))
		if len(n) != 15 || strings.Trim(n, "0123456789") != "" {
			t.Fatalf("number %q; want 15 digits", n)
		}
		if seen[n] {
			t.Fatalf("number %q handed out twice", n)
		}
		seen[n] = true
	}
}

// TestSmokeLimit measures the reference limit beside phonesd and reports
// phonesd's figures over its.
func TestSmokeLimit(t *testing.T) {
	rep := runBenchOutput(t, "--limit", "--duration", "1s", "--warmup", "200ms", "--concurrency", "2", "--commits", "20")
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs; want 2 (this build, the limit)", len(rep.Runs))
	}
	if rep.Runs[0].Build != "this" || rep.Runs[1].Build != limitBuild {
		t.Errorf("builds %q and %q; want this, then %s", rep.Runs[0].Build, rep.Runs[1].Build, limitBuild)
	}
	for _, run := range rep.Runs {
		checkRun(t, run, "sqlite", 0)
	}
	if !strings.Contains(rep.stdout, "creates/limit") {
		t.Errorf("stdout has no comparison with the limit:\n%s", rep.stdout)
	}
}

// TestLimit runs the reference limit on each storage: a create is answered
// 200 and the same create again 409 (the duplicate rule), the floor's body
// 400, and a token signed with another key 401.
func TestLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the limit program: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bd, err := buildLimit(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	auth, err := newLimitAuth()
	if err != nil {
		t.Fatal(err)
	}
	forged, err := newLimitAuth()
	if err != nil {
		t.Fatal(err)
	}
	numbers, err := newNumberSource(15)
	if err != nil {
		t.Fatal(err)
	}
	storages := map[string]func(t *testing.T, dir string) string{
		"sqlite": func(t *testing.T, dir string) string { return "sqlite:" + filepath.Join(dir, "limit.db") },
		"postgres": func(t *testing.T, dir string) string {
			admin := os.Getenv(pgtest.EnvVar)
			if admin == "" {
				t.Skip("set PHONES_TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable (.ci/run sets it)")
			}
			db, err := createDatabase(ctx, admin)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := db.drop(context.Background()); err != nil {
					t.Error(err)
				}
			})
			return db.url
		},
	}
	for name, storage := range storages {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			lim, err := startLimit(ctx, bd.bin, dir, storage(t, dir), auth.key)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := lim.Stop(); err != nil {
					t.Error(err)
				}
			}()
			tg := &target{bases: []string{lim.URL()}, tokens: auth.tokens, accounts: 1, numbers: numbers}
			if err := checkRepeat(ctx, tg); err != nil {
				t.Fatal(err)
			}
			client := &http.Client{Timeout: 10 * time.Second}
			for _, c := range []struct {
				name  string
				m     mode
				token string
				want  int
			}{
				{"create", createMode, auth.tokens[0], http.StatusOK},
				{"floor", floorMode, auth.tokens[1], http.StatusBadRequest},
				{"another key's token", createMode, forged.tokens[0], http.StatusUnauthorized},
			} {
				got, err := tg.send(ctx, client, c.m, lim.URL(), "Bearer "+c.token)
				if err != nil || got != c.want {
					t.Errorf("%s: status %d, error %v; want %d", c.name, got, err, c.want)
				}
			}
		})
	}
}

// TestPrintReplicas divides each run of several replicas by the run of one
// replica of the same build, storage and concurrency, never by another's.
func TestPrintReplicas(t *testing.T) {
	level := func(perSecond, waited float64) []levelResult {
		return []levelResult{{Concurrency: 64, Creates: phaseResult{PerSecond: perSecond}, Scale: &scaleResult{LockWaitedShare: waited}}}
	}
	r := report{Runs: []runResult{
		{Backend: "postgres", Build: "baseline 66cf919", Levels: level(2000, 0)},
		{Backend: "postgres", Build: "baseline 66cf919", Replicas: 3, Levels: level(1000, 0.95)},
		{Backend: "postgres", Build: "this", Levels: level(2000, 0)},
		{Backend: "postgres", Build: "this", Replicas: 3, Levels: level(2400, 0.03)},
	}}
	var b bytes.Buffer
	printReplicas(&b, r)
	out := b.String()
	for _, want := range []string{"0.50  95%", "1.20  3%"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
