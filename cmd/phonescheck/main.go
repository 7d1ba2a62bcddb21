// Command phonescheck checks phonesd's guarantees under faults. It builds
// phonesd with its failpoints, runs it as processes of its own, drives
// concurrent creates and updates whose every outcome it records in a ledger,
// injects faults meanwhile (kill -9, lost databases and brokers, crashes at
// exact points, SIGTERM, hostile clients), and once the service has
// recovered checks the storage and the delivered events against the ledger.
// It prints a table per scenario and exits with status 1 on any violation.
// Usage: go run ./cmd/phonescheck -h.
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
	"strings"
	"syscall"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return
	case errors.Is(err, errViolations):
		fmt.Fprintln(os.Stderr, "phonescheck:", err)
		os.Exit(1)
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "phonescheck: interrupted")
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "phonescheck:", err)
		os.Exit(2)
	}
}

// Variables the PostgreSQL and NATS flags default to: the same as the tests'.
const (
	postgresEnv = pgtest.EnvVar
	natsEnv     = natstest.EnvVar
)

// errViolations is returned when a check failed: phonesd broke a guarantee.
var errViolations = errors.New("violations found")

// options are the checker's flags.
type options struct {
	short       bool
	scenarios   []string
	backends    []string
	postgresURL string
	natsURL     string
	duration    time.Duration
	kills       int
	concurrency int
	p99Limit    time.Duration
	jsonPath    string
	dir         string
	keep        bool
	// asyncStandby makes pg-failover's standby asynchronous, and what it
	// loses a finding rather than a violation.
	asyncStandby bool
}

const usage = `phonescheck checks phonesd's guarantees under faults.

It builds phonesd (with -tags failpoints) and runs it as processes of its
own, sends concurrent creates and updates, and records every outcome in a
ledger: ok, definite failure (4xx) or unknown (transport error, timeout,
5xx). Three creates in ten carry no Idempotency-Key, as the seed's clients
send them; the others carry a unique one. It injects the scenario's faults
meanwhile. Once phonesd has recovered and delivered its outbox, it retries
each unknown once (a create with its key; one without a key is resolved by
the database), then checks that every acknowledged phone and update is
stored as acknowledged, that no definite failure stored anything, that no
create of a number sent once got a 409, that every unknown ended as one
phone or none, that every phone and update has exactly one event, each
sink (the stream, each events file) holding it once, in outbox order and,
per account, in commit order (ids rising, each phone's events as it was
written), that no event lacks its phone, that no phone carries a tenant
other than its token's, and that every answer is one the contract
documents (the requests go through the public client,
github.com/phonesd/phonesd/api).

Scenarios (each on every backend it applies to):
  kill         kill -9 of phonesd under load, restarted each time
  pg-reset     PostgreSQL connections cut and blackholed by a TCP proxy
  pg-lost-commit PostgreSQL's replies to COMMIT lost by a proxy, after the
               server committed
  pg-restart   a private PostgreSQL cluster restarted with -m immediate (full run)
  pg-failover  the PostgreSQL primary killed (kill -9) and its synchronous standby
               promoted; with --async-standby an asynchronous one, whose losses are
               reported, not judged
  nats-outage  the JetStream link cut for a while under load
  nats-restart a private nats-server stopped and started again under load (full run)
  nats-node-kill the stream's leader in a three-server JetStream cluster killed
               (kill -9) and restarted
  relay-crash  the relay killed between the broker's ack, or the events
               file's fsync, and marking the events sent
  replicas     three replicas on one PostgreSQL, each killed once
  datadir      a second phonesd started on the data directory of one under load:
               it exits within a second, naming the directory and the first's pid
  sigterm      SIGTERM under load: in-flight requests finish, exit in under 25 s
  hostile      slowloris, header floods, deep JSON and 2 MiB bodies beside a
               normal client whose p99 must stay under --p99

Scenarios that need PostgreSQL or NATS and have no URL are skipped.

Examples:
  # the CI form: a few scenarios, about 5 minutes
  go run ./cmd/phonescheck --short
  # everything
  PHONES_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
  PHONES_TEST_NATS_URL=nats://127.0.0.1:4222 go run ./cmd/phonescheck
  # one scenario on SQLite, longer
  go run ./cmd/phonescheck --scenario kill --backend sqlite --duration 2m --kills 20

Flags:
`

// scenarioNames lists the scenarios in the order they run; a scenario run
// with several sinks is listed once.
func scenarioNames() []string {
	var names []string
	for _, sc := range scenarios() {
		if !slices.Contains(names, sc.name) {
			names = append(names, sc.name)
		}
	}
	return names
}

// parseOptions reads args (without the program name).
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("phonescheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.BoolVar(&o.short, "short", false, "the CI form: fewer scenarios, shorter, fewer faults")
	fs.Func("scenario", "comma-separated scenarios to run (default: all, or the short set with --short)", func(v string) error {
		for s := range strings.SplitSeq(v, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(scenarioNames(), s) {
				return fmt.Errorf("want one of %s, got %q", strings.Join(scenarioNames(), ", "), s)
			}
			o.scenarios = append(o.scenarios, s)
		}
		return nil
	})
	fs.Func("backend", "comma-separated storages: sqlite, postgres (default both)", func(v string) error {
		for b := range strings.SplitSeq(v, ",") {
			b = strings.TrimSpace(b)
			if b != "sqlite" && b != "postgres" {
				return fmt.Errorf("want sqlite or postgres, got %q", b)
			}
			o.backends = append(o.backends, b)
		}
		return nil
	})
	fs.StringVar(&o.postgresURL, "postgres-url", "", "administrative URL of a PostgreSQL server on which the checker creates and drops databases of its own; default $"+postgresEnv)
	fs.StringVar(&o.natsURL, "nats-url", "", "NATS server with JetStream, on which the checker creates and deletes streams of its own; default $"+natsEnv)
	fs.DurationVar(&o.duration, "duration", 0, "load per scenario (default 15s with --short, 60s otherwise)")
	fs.IntVar(&o.kills, "kills", 0, "kill -9s in the kill scenario, crashes in relay-crash and second processes in datadir (default 3 with --short, 10 otherwise)")
	fs.IntVar(&o.concurrency, "concurrency", 8, "create requests in flight")
	fs.DurationVar(&o.p99Limit, "p99", 50*time.Millisecond, "hostile: the normal client's p99 latency must stay under this")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.dir, "dir", "", "where the work directory is made (default the system's temporary directory)")
	fs.BoolVar(&o.asyncStandby, "async-standby", false, "pg-failover: an asynchronous standby, which may lose acknowledged writes at the failover; what it loses is reported, not counted as violations")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (data, events, phonesd logs); it is always kept after a violation")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	// Read after parsing, so that -h never prints a URL that may hold a password.
	if o.postgresURL == "" {
		o.postgresURL = getenv(postgresEnv)
	}
	if o.natsURL == "" {
		o.natsURL = getenv(natsEnv)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if len(o.backends) == 0 {
		o.backends = []string{"sqlite", "postgres"}
	}
	if o.duration == 0 {
		o.duration = 60 * time.Second
		if o.short {
			o.duration = 15 * time.Second
		}
	}
	if o.kills == 0 {
		o.kills = 10
		if o.short {
			o.kills = 3
		}
	}
	switch {
	case o.duration < 5*time.Second:
		return o, errors.New("--duration must be at least 5s")
	case o.kills < 1:
		return o, errors.New("--kills must be at least 1")
	case o.concurrency < 1 || o.concurrency > 512:
		return o, errors.New("--concurrency must be from 1 to 512")
	case o.p99Limit <= 0:
		return o, errors.New("--p99 must be positive")
	}
	return o, nil
}

// run is the whole program; main only supplies the process's environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args[1:], getenv, stderr)
	if err != nil {
		return err
	}
	c := &checker{opts: o, progress: stderr, out: stdout}
	results, runErr := c.run(ctx)
	printReport(stdout, results)
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, results); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	if runErr != nil {
		return runErr
	}
	n := 0
	for _, r := range results {
		n += len(r.Violations)
		if r.Error != "" {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%w: %d", errViolations, n)
	}
	return nil
}
