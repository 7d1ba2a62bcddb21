package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/faultproxy"
	"github.com/phonesd/phonesd/internal/testkit/idp"
	"github.com/phonesd/phonesd/internal/testkit/launch"
	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// drainTimeout bounds the wait for the outbox to be delivered after
// recovery: the relay backs off up to 30 s after a long outage.
const drainTimeout = 2 * time.Minute

// checker runs the planned scenarios, one after the other.
type checker struct {
	opts     options
	progress io.Writer
	out      io.Writer // per-scenario tables, as each ends
	started  time.Time
	work     string
	bin      string
	iss      *idp.Provider
	tokens   tokenSet
	numbers  *numberSource
	runID    string
}

// say writes a progress line, stamped with the time since the start.
func (c *checker) say(format string, args ...any) {
	fmt.Fprintf(c.progress, "phonescheck [%4.0fs] %s\n", time.Since(c.started).Seconds(), fmt.Sprintf(format, args...))
}

// planned is one scenario on one backend, or the reason it is skipped.
type planned struct {
	sc      *scenario
	backend string
	skip    string
}

// plan lists what to run: the chosen scenarios on the chosen backends they
// apply to, the short set with --short.
func (c *checker) plan() []planned {
	names := c.opts.scenarios
	explicit := len(names) > 0
	if !explicit {
		for _, sc := range scenarios() {
			if !c.opts.short || len(sc.shortBackends) > 0 {
				names = append(names, sc.name)
			}
		}
	}
	var out []planned
	for _, sc := range scenarios() {
		if !slices.Contains(names, sc.name) {
			continue
		}
		backends := sc.backends
		if c.opts.short && len(sc.shortBackends) > 0 {
			backends = sc.shortBackends
		}
		for _, b := range backends {
			if !slices.Contains(c.opts.backends, b) {
				continue
			}
			p := planned{sc: sc, backend: b}
			switch {
			case b == "postgres" && !sc.privatePG && c.opts.postgresURL == "":
				p.skip = "no PostgreSQL: set --postgres-url or $" + postgresEnv
			case sc.privatePG && !havePostgresTools():
				p.skip = "no initdb/pg_ctl to start a private PostgreSQL cluster"
			case (sc.privateNATS || sc.natsCluster > 0) && !haveNATSServer():
				p.skip = "no nats-server to start a private broker"
			case sc.sink == "jetstream" && !sc.privateNATS && sc.natsCluster == 0 && c.opts.natsURL == "":
				p.skip = "no NATS: set --nats-url or $" + natsEnv
			}
			out = append(out, p)
		}
	}
	return out
}

func haveNATSServer() bool {
	_, err := natstest.ServerBinary()
	return err == nil
}

func havePostgresTools() bool {
	_, err := pgtest.ClusterTools()
	return err == nil
}

// run runs the plan and returns a result per planned run.
func (c *checker) run(ctx context.Context) ([]result, error) {
	c.started = time.Now()
	c.numbers = newNumberSource()
	c.runID = strconv.FormatInt(time.Now().Unix(), 36) + c.numbers.prefix
	plan := c.plan()
	if len(plan) == 0 {
		return nil, errors.New("nothing to run: no chosen scenario applies to the chosen backends")
	}
	work, err := os.MkdirTemp(c.opts.dir, "phonescheck-")
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	c.work = work
	keep := c.opts.keep
	defer func() {
		if keep {
			c.say("work directory kept: %s", work)
			return
		}
		os.RemoveAll(work)
	}()

	if c.iss, err = idp.Start(); err != nil {
		return nil, err
	}
	defer c.iss.Close()
	if c.tokens, err = mintTokens(c.iss); err != nil {
		return nil, err
	}
	c.say("building phonesd with -tags failpoints")
	if c.bin, err = launch.Build(ctx, work, "failpoints"); err != nil {
		return nil, err
	}

	var results []result
	for _, p := range plan {
		if p.skip != "" {
			c.say("%s/%s: skipped: %s", p.sc.name, p.backend, p.skip)
			results = append(results, result{Scenario: p.sc.name, Backend: p.backend, Sink: p.sc.sink, Skipped: p.skip})
			continue
		}
		c.say("%s/%s: %s", p.sc.name, p.backend, p.sc.about)
		r := c.runScenario(ctx, p.sc, p.backend)
		results = append(results, r)
		printScenario(c.out, r)
		if len(r.Violations) > 0 || r.Error != "" {
			keep = true
		}
		if err := ctx.Err(); err != nil {
			return results, err
		}
	}
	return results, nil
}

// trial is one scenario on one backend: its storage, sink, replicas,
// ledger and load, and what it found beyond the common checks.
type trial struct {
	c       *checker
	sc      *scenario
	backend string
	dir     string

	// env is what every replica gets beyond its data directory.
	env      map[string]string
	ledger   *ledger
	client   *client
	load     *load
	replicas []*launch.Process
	store    storage
	stream   *natstest.Stream
	// dbProxy and natsProxy stand between phonesd and PostgreSQL, or NATS,
	// when the scenario cuts that link.
	dbProxy   *faultproxy.Proxy
	natsProxy *faultproxy.Proxy
	pg        *pgtest.Cluster
	standby   *pgtest.Cluster
	cluster   *natstest.Cluster
	nats      *natstest.Server

	cleanups []func() error
	// checks run once the service has recovered and the unknowns have been
	// retried, for what a scenario can only judge then.
	checks []func(o observed)
	extra  []violation
	notes  []string
}

// say writes a progress line naming the scenario.
func (s *trial) say(format string, args ...any) {
	s.c.say("%s/%s: %s", s.sc.name, s.backend, fmt.Sprintf(format, args...))
}

func (s *trial) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

func (s *trial) violate(kind, format string, args ...any) {
	s.extra = append(s.extra, violation{Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

// sleep waits d, or less when ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// runScenario sets a scenario up, drives it, lets the service recover,
// observes and verifies, and tears everything down.
func (c *checker) runScenario(ctx context.Context, sc *scenario, backend string) result {
	began := time.Now()
	res := result{Scenario: sc.name, Backend: backend, Sink: sc.sink}
	s := &trial{c: c, sc: sc, backend: backend, ledger: &ledger{}}
	defer func() {
		for i := len(s.cleanups) - 1; i >= 0; i-- {
			if err := s.cleanups[i](); err != nil {
				c.say("%s/%s: cleanup: %v", sc.name, backend, err)
			}
		}
		if s.client != nil {
			s.client.close()
		}
	}()
	fail := func(err error) result {
		res.Error = err.Error()
		res.Violations = s.extra
		res.Notes = s.notes
		res.Seconds = time.Since(began).Seconds()
		return res
	}
	if err := s.setup(ctx); err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	if err := sc.drive(ctx, s); err != nil {
		if s.load != nil {
			s.load.stop()
		}
		return fail(err)
	}
	o, err := s.settle(ctx)
	if err != nil {
		return fail(fmt.Errorf("after recovery: %w", err))
	}
	s.stopAll()
	for _, check := range s.checks {
		check(o)
	}
	creates, updates := s.ledger.snapshot()
	limited := 0
	for _, e := range creates {
		if e.Status == 429 {
			limited++
		}
	}
	for _, u := range updates {
		if u.Status == 429 {
			limited++
		}
	}
	if limited > 0 {
		s.note("%d requests answered 429 (the rate limit per tenant, %d tenants): definite failures, checked to store nothing", limited, len(tenants))
	}
	t, vs := verify(creates, updates, o)
	if s.lossExpected() {
		res.Expected, vs = vs, nil
	}
	vs = append(vs, s.extra...)
	sortViolations(vs)
	res.tally = t
	res.Violations = vs
	res.Notes = s.notes
	res.Seconds = time.Since(began).Seconds()
	if err := writeLedger(filepath.Join(s.dir, "ledger.json"), creates, updates); err != nil {
		c.say("%s/%s: ledger: %v", sc.name, backend, err)
	} else {
		res.Ledger = filepath.Join(s.dir, "ledger.json")
	}
	return res
}

// setup makes the scenario's storage, sink and replicas.
func (s *trial) setup(ctx context.Context) error {
	c := s.c
	s.dir = filepath.Join(c.work, s.sc.name+"-"+s.backend+"-"+s.sc.sink)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	env := map[string]string{
		"PHONES_JWKS_URL":     c.iss.JWKSURL,
		"PHONES_JWT_ISSUER":   checkIssuer,
		"PHONES_JWT_AUDIENCE": checkAudience,
	}
	switch s.backend {
	case "sqlite":
		s.store.sqlitePath = filepath.Join(s.dir, "phones.db")
		env["PHONES_DATABASE_URL"] = "sqlite:" + s.store.sqlitePath
	case "postgres":
		var dbURL string
		if s.sc.standby {
			url, err := s.startFailoverPair(ctx)
			if err != nil {
				return err
			}
			dbURL = url
		} else if s.sc.privatePG {
			pg, err := pgtest.StartCluster(ctx, "phonescheck")
			if err != nil {
				return err
			}
			s.pg = pg
			s.cleanups = append(s.cleanups, pg.Stop)
			if dbURL, err = pg.CreateDatabase(ctx, "phonescheck"); err != nil {
				return fmt.Errorf("private cluster: %w", err)
			}
			s.note("private PostgreSQL cluster on 127.0.0.1:%d", pg.Port)
		} else {
			url, drop, err := pgtest.Create(ctx, c.opts.postgresURL, func(format string, args ...any) { c.say(format, args...) })
			if err != nil {
				return fmt.Errorf("--postgres-url: %w", err)
			}
			dbURL = url
			s.cleanups = append(s.cleanups, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				return drop(ctx)
			})
		}
		s.store.postgresURL = dbURL
		env["PHONES_DATABASE_URL"] = dbURL
		if s.sc.proxyDB {
			u, p, err := proxiedPostgres(dbURL, s.sc.loseCommits)
			if err != nil {
				return err
			}
			s.dbProxy = p
			s.cleanups = append(s.cleanups, p.Close)
			env["PHONES_DATABASE_URL"] = u
		}
	}
	if s.sc.sink == "jetstream" {
		natsURL := c.opts.natsURL
		if s.sc.privateNATS {
			n, err := natstest.StartServer(ctx, s.dir)
			if err != nil {
				return err
			}
			s.nats = n
			s.cleanups = append(s.cleanups, n.Stop)
			natsURL = n.URL()
			s.note("private nats-server on 127.0.0.1:%d", n.Port)
		}
		if s.sc.natsCluster > 0 {
			url, err := s.startNATSCluster(ctx)
			if err != nil {
				return err
			}
			natsURL = url
			env["PHONES_NATS_REPLICAS"] = strconv.Itoa(s.sc.natsCluster)
		}
		st, done, err := natstest.Open(ctx, natsURL, func(format string, args ...any) { c.say(format, args...) })
		if err != nil {
			return fmt.Errorf("--nats-url: %w", err)
		}
		s.stream = st
		s.cleanups = append(s.cleanups, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return done(ctx)
		})
		url := st.URL
		if s.sc.proxyNATS {
			u, p, err := proxied(st.URL)
			if err != nil {
				return err
			}
			s.natsProxy = p
			s.cleanups = append(s.cleanups, p.Close)
			url = u
		}
		env["PHONES_EVENTS_URL"] = url
		env["PHONES_NATS_STREAM"] = st.Name
		env["PHONES_NATS_SUBJECT_PREFIX"] = st.Prefix
	}
	s.env = env
	n := max(s.sc.replicas, 1)
	var targets []string
	for i := range n {
		r, err := newReplica("phonesd-"+strconv.Itoa(i+1), c.bin, s.dir, env)
		if err != nil {
			return err
		}
		s.replicas = append(s.replicas, r)
		targets = append(targets, r.URL())
		s.cleanups = append(s.cleanups, func() error { r.Kill(); return nil })
	}
	s.client = newClient(c.opts.concurrency + 8)
	s.load = newLoad(s.ledger, targets, c.tokens, s.client, c.numbers, c.runID, c.opts.concurrency)
	return nil
}

// startAll starts every replica that is not running and waits until each
// is ready.
func (s *trial) startAll(ctx context.Context) error {
	for _, r := range s.replicas {
		if r.Running() {
			continue
		}
		if err := r.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// settle brings the service back (every replica ready), retries the
// unknowns, waits for the outbox to be delivered, and observes.
func (s *trial) settle(ctx context.Context) (observed, error) {
	var o observed
	for _, p := range []*faultproxy.Proxy{s.dbProxy, s.natsProxy} {
		if p != nil {
			p.Set(faultproxy.Pass)
		}
	}
	if err := s.startAll(ctx); err != nil {
		return o, err
	}
	for _, r := range s.replicas {
		if err := r.WaitReady(ctx, launch.ReadyTimeout); err != nil {
			return o, err
		}
	}
	base := s.replicas[0].URL()
	creates, updates := s.ledger.snapshot()
	unknown := 0
	for _, e := range creates {
		if e.Class == classUnknown {
			unknown++
		}
	}
	for _, u := range updates {
		if u.Class == classUnknown {
			unknown++
		}
	}
	began := time.Now()
	s.load.resolve(base, creates, updates)
	s.say("recovered; retried %d unknowns in %.1fs; waiting for the outbox to be delivered", unknown, time.Since(began).Seconds())
	if took, err := s.waitDrained(ctx, drainTimeout); err != nil {
		s.violate("drain", "%v", err)
	} else if took > 5*time.Second {
		s.note("outbox delivered %.1fs after recovery", took.Seconds())
	}
	began = time.Now()
	defer func() {
		s.say("read %d rows, %d listings and %d event deliveries in %.1fs", len(o.Rows), len(o.Listings), len(o.Deliveries), time.Since(began).Seconds())
	}()
	if err := s.store.readRows(ctx, &o); err != nil {
		return o, err
	}
	o.Listings = listAll(s.client, base, s.c.tokens)
	if s.stream != nil {
		o.LateWithin = s.sc.lateWithin
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if err := readStream(rctx, &o, s.stream); err != nil {
			return o, err
		}
	} else {
		var paths []string
		for _, r := range s.replicas {
			paths = append(paths, filepath.Join(r.DataDir, "events.jsonl"))
		}
		if err := readEventFiles(&o, paths); err != nil {
			return o, err
		}
	}
	return o, nil
}

// waitDrained polls /readyz until the outbox has nothing pending, by a
// figure taken after the wait began: every retry had been answered by then.
func (s *trial) waitDrained(ctx context.Context, limit time.Duration) (time.Duration, error) {
	began := time.Now()
	hc := &http.Client{Timeout: 2 * time.Second}
	last := int64(-1)
	for {
		for _, r := range s.replicas {
			rd, err := ready(r, hc)
			if err == nil && rd.status == http.StatusOK && rd.pending >= 0 && rd.checkedAt.After(began) {
				last = rd.pending
				break
			}
		}
		if last == 0 {
			return time.Since(began), nil
		}
		if time.Since(began) > limit {
			return time.Since(began), fmt.Errorf("%d events still pending in the outbox %s after recovery", last, limit)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// stopAll stops every replica with SIGTERM; each must exit 0.
func (s *trial) stopAll() {
	for _, r := range s.replicas {
		if !r.Running() {
			continue
		}
		took, code, err := r.Terminate()
		switch {
		case err != nil:
			s.violate("exit", "%v", err)
		case code != 0:
			s.violate("exit", "%s exited with status %d after SIGTERM (in %.1fs); want 0\n%s", r.Name, code, took.Seconds(), r.LogTail())
		}
	}
}
