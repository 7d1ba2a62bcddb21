// Command phonesbench measures how fast phonesd creates phones. It starts
// phonesd itself (or loads one given by --url), sends Create phone requests
// at each chosen concurrency, and measures in the same run the request-path
// floor (the same requests refused with 400 before storage) and the bare
// commit latency of the storage, so that results taken on a shared, noisy
// machine are compared as ratios. Usage: go run ./cmd/phonesbench -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "phonesbench: interrupted")
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "phonesbench:", err)
		os.Exit(1)
	}
}

// postgresEnv names the variable --postgres-url defaults to.
const postgresEnv = "PHONES_BENCH_DATABASE_URL"

// runtimeEnv are the Go runtime's variables --env also takes, to measure
// phonesd under other scheduler or collector settings than the bench's own.
var runtimeEnv = map[string]bool{"GOMAXPROCS": true, "GOGC": true, "GOMEMLIMIT": true, "GODEBUG": true}

// options are the benchmark's flags.
type options struct {
	backends    []string
	concurrency []int
	duration    time.Duration
	warmup      time.Duration
	accounts    int64
	preload     int
	growth      bool
	batch       int
	commits     int
	postgresURL string
	url         string
	token       string
	jsonPath    string
	plotPath    string // chart of the results
	plotFrom    string // --json file to draw instead of measuring
	dir         string
	keep        bool
	env         []string // KEY=VALUE pairs for the phonesd the bench starts
	baselineRef string   // a git revision whose phonesd is measured beside this one
	rounds      int
	// replicas are how many phonesd share one PostgreSQL database and the
	// load, one deployment each, measured in the same rotation; ha
	// measures on private servers, without and with replicas.
	replicas []int
	ha       bool
	// limit also measures the reference limit, cmd/phonesbench/limit.
	limit bool
}

const usage = `phonesbench measures phonesd's Create phone throughput and latency.

It builds and starts phonesd (one per backend, fresh data each time), sends
Create phone requests with unique numbers over many accounts, then the same
requests with "type": "INVALID", which phonesd answers 400 without touching
storage: the request-path floor. The ratio creates/s ÷ floor/s is the number
to compare between runs; the storage's bare commit latency is printed beside
it, to tell the disk from the service's work.

Examples:
  # SQLite at concurrency 1 and 64: about 2.5 minutes
  go run ./cmd/phonesbench
  # the smoke run of CI
  go run ./cmd/phonesbench --duration 5s --warmup 1s --concurrency 4
  # both backends, several concurrencies, results also as JSON
  go run ./cmd/phonesbench --backend sqlite,postgres --concurrency 1,16,64,256 \
      --postgres-url 'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' --json bench.json
  # the README's chart, drawn again from the results of that run
  go run ./cmd/phonesbench --plot-from bench.json --plot docs/bench.svg
  # growth: empty storage, then 1,000,000 phones preloaded
  go run ./cmd/phonesbench --preload 1000000 --growth
  # this checkout against an earlier commit, side by side, median of 3 rounds
  go run ./cmd/phonesbench --baseline-ref e4cc1e3 --rounds 3 --concurrency 64 --duration 10s --warmup 2s
  # one and three replicas on one PostgreSQL database, in one rotation:
  # throughput, ordering lock waits, commits/s, WAL and CPU per create
  go run ./cmd/phonesbench --backend postgres --replicas 1,3 --concurrency 64 \
      --postgres-url 'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
  # phonesd against the reference limit and an earlier commit, both backends
  go run ./cmd/phonesbench --limit --baseline-ref main --rounds 3 --backend sqlite,postgres \
      --concurrency 64 --duration 10s --warmup 2s \
      --postgres-url 'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
  # what a synchronous standby and an R3 stream cost, against single servers
  go run ./cmd/phonesbench --ha --concurrency 16,64
  # a phonesd already running
  go run ./cmd/phonesbench --url http://127.0.0.1:8080 --token "$TOKEN"

Flags:
`

// parseOptions reads args (without the program name).
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	o := options{
		backends:    []string{"sqlite"},
		concurrency: []int{1, 64},
		replicas:    []int{1},
	}
	fs := flag.NewFlagSet("phonesbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	backendSet := false
	fs.Func("backend", "comma-separated storages to run phonesd on: sqlite, postgres (default sqlite)", func(v string) error {
		o.backends, backendSet = nil, true
		for b := range strings.SplitSeq(v, ",") {
			b = strings.TrimSpace(b)
			if b != "sqlite" && b != "postgres" {
				return fmt.Errorf("want sqlite or postgres, got %q", b)
			}
			o.backends = append(o.backends, b)
		}
		return nil
	})
	fs.Func("concurrency", "comma-separated numbers of requests in flight, one measurement each (default 1,64)", func(v string) error {
		o.concurrency = nil
		for s := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 || n > 10000 {
				return fmt.Errorf("want integers from 1 to 10000, got %q", s)
			}
			o.concurrency = append(o.concurrency, n)
		}
		return nil
	})
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long each measurement lasts, after its warm-up")
	fs.DurationVar(&o.warmup, "warmup", 5*time.Second, "load sent before each measurement and not counted")
	fs.Int64Var(&o.accounts, "accounts", 10000, "account ids the requests (and the preload) are spread over")
	fs.IntVar(&o.preload, "preload", 0, "phones stored, with their events marked sent, before phonesd starts")
	fs.BoolVar(&o.growth, "growth", false, "with --preload: measure on empty storage first, then on the preloaded one")
	fs.IntVar(&o.batch, "preload-batch", 5000, "phones per preload transaction")
	fs.IntVar(&o.commits, "commits", 200, "bare commits timed to measure the storage's commit latency")
	fs.StringVar(&o.postgresURL, "postgres-url", "", "PostgreSQL server (a role that may create databases) the bench creates its database on; default $"+postgresEnv)
	fs.StringVar(&o.url, "url", "", "load a phonesd already running at this base URL instead of starting one (needs --token; --backend is then ignored)")
	fs.StringVar(&o.token, "token", "", "with --url: the bearer token of the requests, tenant-wide")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.plotPath, "plot", "", "also draw creates/s and floor/s against the concurrency, per backend, to this file (.svg, .png or .pdf)")
	fs.StringVar(&o.plotFrom, "plot-from", "", "with --plot: draw the results of this --json file instead of measuring")
	fs.StringVar(&o.dir, "dir", "", "where the work directory (data, logs) is made; it should be on the disk under test (default the system's temporary directory)")
	fs.StringVar(&o.baselineRef, "baseline-ref", "", "also build phonesd at this git revision (from a worktree of this repository) and measure it beside this checkout's, alternating, in the same run")
	fs.IntVar(&o.rounds, "rounds", 1, "measurements of each concurrency per phonesd; the report gives their medians")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (SQLite files, events, phonesd logs) afterwards; it is always kept after a failure (PostgreSQL databases are dropped regardless)")
	fs.Func("env", "KEY=VALUE set for the phonesd the bench starts, e.g. PHONES_DB_MAX_CONNS=32 or GOMAXPROCS=4 (repeatable; a PHONES_* variable or one of the Go runtime's GOMAXPROCS, GOGC, GOMEMLIMIT, GODEBUG; the caller's own PHONES_* variables are not passed on)", func(v string) error {
		k, _, ok := strings.Cut(v, "=")
		if !ok || !(strings.HasPrefix(k, "PHONES_") || runtimeEnv[k]) {
			return fmt.Errorf("want PHONES_NAME=VALUE or a Go runtime variable, got %q", v)
		}
		if managedEnv[k] {
			return fmt.Errorf("%s is set by the bench", k)
		}
		o.env = append(o.env, v)
		return nil
	})
	fs.Func("replicas", "comma-separated numbers of phonesd processes sharing one PostgreSQL database, the load spread evenly across them, each measured in the same rotation (more than 1: postgres only; default 1)", func(v string) error {
		o.replicas = nil
		for s := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 || n > 16 {
				return fmt.Errorf("--replicas: want integers from 1 to 16, got %q", s)
			}
			if slices.Contains(o.replicas, n) {
				return fmt.Errorf("--replicas: %d given twice", n)
			}
			o.replicas = append(o.replicas, n)
		}
		return nil
	})
	fs.BoolVar(&o.limit, "limit", false, "also measure the reference limit (cmd/phonesbench/limit: the least a Go program does for a durable create) beside phonesd, in the same rotation, and report phonesd's figures over its")
	fs.BoolVar(&o.ha, "ha", false, "measure PostgreSQL and JetStream on private servers the bench starts, in one run: alone (one nats-server, stream R1), then with a synchronous standby and a three-server cluster (stream R3); needs initdb, pg_basebackup and nats-server; replaces --backend and --postgres-url")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	// Read after parsing, so that -h never prints a URL that may hold a password.
	if o.postgresURL == "" {
		o.postgresURL = getenv(postgresEnv)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.plotFrom != "" && o.plotPath == "" {
		return o, errors.New("--plot-from draws to the file of --plot: give --plot FILE.svg too")
	}
	switch {
	case o.duration <= 0:
		return o, errors.New("--duration must be positive")
	case o.warmup < 0:
		return o, errors.New("--warmup must not be negative")
	case o.accounts < 1:
		return o, errors.New("--accounts must be at least 1")
	case o.preload < 0:
		return o, errors.New("--preload must not be negative")
	case o.growth && o.preload == 0:
		return o, errors.New("--growth compares empty with preloaded storage: give --preload N too")
	case o.batch < 1:
		return o, errors.New("--preload-batch must be at least 1")
	case o.commits < 1:
		return o, errors.New("--commits must be at least 1")
	case o.rounds < 1:
		return o, errors.New("--rounds must be at least 1")
	}
	if o.ha {
		if backendSet && !slices.Equal(o.backends, []string{"postgres"}) {
			return o, errors.New("--ha runs PostgreSQL on private servers: --backend may only be postgres")
		}
		if o.url != "" {
			return o, errors.New("--ha starts its own servers and phonesd, not --url")
		}
		o.backends = []string{"postgres"}
	}
	if o.limit && (o.url != "" || o.ha || o.preload > 0) {
		return o, errors.New("--limit runs on the storage named by --backend, empty: not with --url, --ha or --preload")
	}
	if slices.Max(o.replicas) > 1 && (o.url != "" || slices.Contains(o.backends, "sqlite")) {
		return o, errors.New("--replicas shares one PostgreSQL database: use --backend postgres (SQLite is one process's file), not --url")
	}
	if o.url != "" {
		o.url = strings.TrimRight(o.url, "/")
		if !strings.HasPrefix(o.url, "http://") && !strings.HasPrefix(o.url, "https://") {
			return o, errors.New("--url: want http://host:port or https://host:port")
		}
		if o.token == "" {
			return o, errors.New("--url needs --token, a tenant-wide token the server accepts")
		}
		if o.preload > 0 || len(o.env) > 0 || o.baselineRef != "" {
			return o, errors.New("--preload, --env and --baseline-ref need a phonesd started by the bench, not --url")
		}
		return o, nil
	}
	if o.token != "" {
		return o, errors.New("--token goes with --url; the bench mints its own tokens for the phonesd it starts")
	}
	for _, b := range o.backends {
		if b == "postgres" && o.postgresURL == "" && !o.ha {
			return o, errors.New("--backend postgres needs --postgres-url or $" + postgresEnv + ", e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
		}
	}
	return o, nil
}

// run is the whole program; main only supplies the process's environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args[1:], getenv, stderr)
	if err != nil {
		return err
	}
	if o.plotFrom != "" {
		rep, err := readJSON(o.plotFrom)
		if err != nil {
			return err
		}
		return drawPlot(o.plotPath, rep)
	}
	b := &bench{opts: o, progress: stderr}
	rep, runErr := b.run(ctx)
	if len(rep.Runs) > 0 {
		printReport(stdout, rep)
		if o.jsonPath != "" {
			if err := writeJSON(o.jsonPath, rep); err != nil {
				return errors.Join(runErr, err)
			}
		}
		if o.plotPath != "" {
			if err := drawPlot(o.plotPath, rep); err != nil {
				return errors.Join(runErr, err)
			}
		}
	}
	if runErr != nil {
		return runErr
	}
	return rep.check()
}
