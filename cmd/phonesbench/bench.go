package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/idp"
	"github.com/phonesd/phonesd/internal/testkit/launch"
	"github.com/phonesd/phonesd/internal/testkit/procstat"
)

// Tokens: a handful, minted once and taken in turn by the workers; phonesd
// verifies each request's token anyway, which is part of the floor.
const (
	tokenCount = 4
	tokenTTL   = 24 * time.Hour
)

// relayWait bounds the wait, after a create measurement, for the relay to
// deliver the events of the phones just created, so that the floor that
// follows does not pay for the relay's backlog.
const relayWait = 2 * time.Minute

// bench runs the measurements that options ask for.
type bench struct {
	opts     options
	progress io.Writer
	started  time.Time
	numbers  *numberSource
	// limitAuth signs the requests to the reference limit (--limit).
	limitAuth limitAuth
}

// say writes a progress line to stderr, stamped with the time since the start.
func (b *bench) say(format string, args ...any) {
	fmt.Fprintf(b.progress, "phonesbench [%4.0fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// preloads lists the storage sizes each backend is measured at.
func (b *bench) preloads() []int {
	if b.opts.growth {
		return []int{0, b.opts.preload}
	}
	return []int{b.opts.preload}
}

// run measures every backend, preload and concurrency; the report holds
// what was measured before an error too.
func (b *bench) run(ctx context.Context) (report, error) {
	b.started = time.Now()
	numbers, err := newNumberSource(15)
	if err != nil {
		return report{}, err
	}
	b.numbers = numbers
	rep := newReport(b.opts, b.started)
	backends := b.opts.backends
	if b.opts.url != "" {
		backends = []string{"url"}
	}
	phase := b.opts.warmup + b.opts.duration
	runs := 1 // this build, then the baseline and the limit when asked for
	if b.opts.baselineRef != "" {
		runs++
	}
	if b.opts.limit {
		runs++
	}
	total := time.Duration(len(backends)*len(b.topologies())*len(b.preloads())*len(b.opts.concurrency)*2*runs*b.opts.rounds) * phase
	b.say("%d CPUs; %d measurements of %s warm-up + %s: about %s of load, plus start-up, preload and commit timing",
		runtime.NumCPU(), total/phase, b.opts.warmup, b.opts.duration, total.Round(time.Second))

	if b.opts.url != "" {
		r, err := b.runExternal(ctx)
		rep.Runs = append(rep.Runs, r)
		return rep, err
	}

	work, err := os.MkdirTemp(b.opts.dir, "phonesbench-")
	if err != nil {
		return rep, fmt.Errorf("work directory: %w", err)
	}
	keep := b.opts.keep
	defer func() {
		if keep {
			b.say("work directory kept: %s", work)
			return
		}
		if err := os.RemoveAll(work); err != nil {
			b.say("could not remove the work directory %s: %v", work, err)
		}
	}()
	if keep {
		rep.WorkDir = work
	}

	iss, err := idp.Start()
	if err != nil {
		return rep, err
	}
	defer iss.Close()
	tokens := make([]string, tokenCount)
	for i := range tokens {
		if tokens[i], err = benchToken(iss, "bench-operator-"+strconv.Itoa(i+1), tokenTTL); err != nil {
			return rep, err
		}
	}

	b.say("building phonesd")
	bin, err := launch.Build(ctx, work)
	if err != nil {
		keep = true
		return rep, err
	}
	builds := []build{{name: "this", bin: bin}}
	if b.opts.baselineRef != "" {
		b.say("building phonesd at %s", b.opts.baselineRef)
		base, err := buildRef(ctx, work, b.opts.baselineRef)
		if err != nil {
			keep = true
			return rep, err
		}
		builds = append([]build{base}, builds...)
	}
	if b.opts.limit {
		b.say("building the reference limit")
		lim, err := buildLimit(ctx, work)
		if err != nil {
			keep = true
			return rep, err
		}
		if b.limitAuth, err = newLimitAuth(); err != nil {
			return rep, err
		}
		builds = append(builds, lim)
	}
	for _, topo := range b.topologies() {
		for _, backend := range b.opts.backends {
			for _, preload := range b.preloads() {
				runs, err := b.runBackend(ctx, backend, topo, preload, work, builds, iss.JWKSURL, tokens)
				for _, r := range runs {
					if r.Storage != nil || len(r.Levels) > 0 {
						rep.Runs = append(rep.Runs, r)
					}
				}
				if err != nil {
					keep = true
					return rep, err
				}
			}
		}
	}
	return rep, nil
}

// topologies lists the --ha topologies, or only "" (the storage named by
// --backend and --postgres-url, events to a file) without it.
func (b *bench) topologies() []string {
	if b.opts.ha {
		return []string{topologySingle, topologyHA}
	}
	return []string{""}
}

// build is a phonesd binary under test: this checkout's, or the
// --baseline-ref one's; or the reference limit (--limit).
type build struct {
	name  string // "this", "baseline <ref>" or "limit"
	bin   string
	limit bool
}

// deployment is one build running on fresh storage of its own: --replicas
// phonesd on it, on the private servers of a --ha topology when set.
type deployment struct {
	build   build
	name    string
	svcs    []*launch.Process
	target  *target
	events  eventCounter
	created int64 // 200s answered, warm-ups included: events to deliver
	// store is set for PostgreSQL, whose server each creates measurement
	// watches; topo for --ha, whose stream the events go to.
	store     storageTarget
	topo      *topology
	delivered int64 // events of the stream already measured for their lag
}

// runBackend starts each build on fresh storage of backend holding preload
// phones, once per count of --replicas (the limit once: it is one
// process), and measures each concurrency on them in turn: --rounds
// rounds, the deployments alternating within a round and their order
// turning from one round to the next, so that a machine's drift falls on
// all alike. It returns a run per deployment, whose levels are the medians
// of its rounds.
func (b *bench) runBackend(ctx context.Context, backend, topo string, preload int, work string, builds []build, jwksURL string, tokens []string) (runs []runResult, err error) {
	type planned struct {
		build    build
		replicas int
	}
	var plan []planned
	for _, bd := range builds {
		for _, n := range b.opts.replicas {
			if bd.limit && n > 1 {
				continue
			}
			plan = append(plan, planned{bd, n})
		}
		if bd.limit && !slices.Contains(b.opts.replicas, 1) {
			plan = append(plan, planned{bd, 1})
		}
	}
	runs = make([]runResult, len(plan))
	deps := make([]*deployment, len(plan))
	for i, p := range plan {
		runs[i] = runResult{Backend: backend, Preload: preload, Build: p.build.name, Topology: topo}
		if p.replicas > 1 {
			runs[i].Replicas = p.replicas
		}
		d, stop, err := b.deploy(ctx, backend, topo, preload, work, p.build, p.replicas, len(builds) > 1, jwksURL, tokens, &runs[i])
		if stop != nil {
			defer func() { err = errors.Join(err, stop()) }()
		}
		if err != nil {
			return runs, err
		}
		deps[i] = d
	}
	for _, c := range b.opts.concurrency {
		rounds := make([][]levelResult, len(deps))
		for round := range b.opts.rounds {
			for k := range deps {
				i := k
				if round%2 == 1 {
					i = len(deps) - 1 - k
				}
				lvl, err := b.measure(ctx, deps[i], c, round)
				if err != nil {
					return runs, err
				}
				rounds[i] = append(rounds[i], lvl)
			}
		}
		for i := range deps {
			runs[i].Levels = append(runs[i].Levels, medianLevel(rounds[i]))
		}
	}
	for i, d := range deps {
		if d.store != nil && backend == "postgres" {
			if runs[i].Footprint, err = readFootprint(ctx, d.store.databaseURL()); err != nil {
				b.say("%s: %v", d.name, err)
				err = nil
			}
		}
	}
	return runs, nil
}

// deploy starts replicas of bd on fresh storage of backend, on the
// private servers of topology topo when set, holding preload phones, after
// timing the storage's bare commits into res. stop stops phonesd, drops a
// PostgreSQL database and stops private servers; it is set whenever
// something needs undoing.
func (b *bench) deploy(ctx context.Context, backend, topo string, preload int, work string, bd build, replicas int, named bool, jwksURL string, tokens []string, res *runResult) (d *deployment, stop func() error, err error) {
	name := backend
	if topo != "" {
		name += "-" + topo
	}
	if preload > 0 {
		name += "-preload-" + strconv.Itoa(preload)
	}
	if named {
		name += "-" + strings.ReplaceAll(bd.name, " ", "-")
	}
	if replicas > 1 {
		name += "-x" + strconv.Itoa(replicas)
	}
	dataDir := filepath.Join(work, name)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	// Each replica gets its data directory, and its events file unless a
	// --ha topology sends the events to its stream.
	env := map[string]string{
		"PHONES_JWKS_URL":     jwksURL,
		"PHONES_JWT_ISSUER":   benchIssuer,
		"PHONES_JWT_AUDIENCE": benchAudience,
		"PHONES_LOG_LEVEL":    "info",
		// The bench is one tenant at full speed: a per-tenant rate limit,
		// or a tenant's share of the requests in flight, would measure the
		// limit, not the service (--env may set them). Its workers hold
		// one request each, so the highest concurrency is all the tenant
		// needs; asking no more keeps the setting valid for an earlier
		// phonesd built with --baseline-ref, which capped it lower.
		"PHONES_RATE_LIMIT":               "0",
		"PHONES_MAX_IN_FLIGHT_PER_TENANT": strconv.Itoa(slices.Max(b.opts.concurrency)),
	}

	var undo []func() error
	stop = func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		return errors.Join(errs...)
	}
	var (
		store storageTarget
		tp    *topology
	)
	switch backend {
	case "sqlite":
		store = sqliteTarget{dir: dataDir}
	case "postgres":
		if topo != "" {
			b.say("%s: starting private servers", name)
			if tp, err = startTopology(ctx, topo, dataDir); err != nil {
				return nil, stop, fmt.Errorf("%s: %w", name, err)
			}
			undo = append(undo, func() error {
				stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				return tp.stop(stopCtx)
			})
			b.say("%s: %s", name, tp.describe())
			store = postgresTarget{url: tp.dbURL}
			for k, v := range tp.env() {
				env[k] = v
			}
			break
		}
		db, err := createDatabase(ctx, b.opts.postgresURL)
		if err != nil {
			return nil, nil, err
		}
		b.say("%s: created database %s", name, db.name)
		undo = append(undo, func() error {
			// The caller's context may have ended: the drop must still run.
			dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			return db.drop(dropCtx)
		})
		store = postgresTarget{url: db.url}
	default:
		return nil, nil, fmt.Errorf("unknown backend %q", backend)
	}
	env["PHONES_DATABASE_URL"] = store.databaseURL()

	if preload > 0 {
		b.say("%s: preloading %d phones over %d accounts, %d per transaction", name, preload, b.opts.accounts, b.opts.batch)
		took, err := preloadPhones(ctx, store, preload, b.opts.accounts, b.opts.batch, func(done int, elapsed time.Duration) {
			b.say("%s: preloaded %d/%d phones (%.0f/s)", name, done, preload, float64(done)/elapsed.Seconds())
		})
		if err != nil {
			return nil, stop, fmt.Errorf("%s: preload: %w", name, err)
		}
		res.PreloadSeconds = took.Seconds()
	}

	b.say("%s: timing %d bare commits", name, b.opts.commits)
	st, err := store.commitLatency(ctx, b.opts.commits)
	if err != nil {
		return nil, stop, fmt.Errorf("%s: commit latency: %w", name, err)
	}
	res.Storage = &st

	var (
		svcs   []*launch.Process
		events eventCounter
	)
	if bd.limit {
		// One process, one writer, and no relay: nothing to deliver.
		lim, err := startLimit(ctx, bd.bin, dataDir, store.databaseURL(), b.limitAuth.key)
		if err != nil {
			return nil, stop, fmt.Errorf("%s: %w", name, err)
		}
		svcs, tokens = []*launch.Process{lim}, b.limitAuth.tokens
	} else {
		var files filesCounter
		svcs, files, err = startReplicas(ctx, bd.bin, dataDir, replicas, env, b.opts.env)
		if err != nil {
			return nil, stop, fmt.Errorf("%s: %w", name, err)
		}
		events = files
	}
	var bases []string
	for _, svc := range svcs {
		b.say("%s: %s pid %d at %s, logs in %s", name, svc.Name, svc.PID(), svc.URL(), svc.LogPath)
		bases = append(bases, svc.URL())
	}
	undo = append(undo, func() error {
		if err := stopReplicas(svcs); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	d = &deployment{
		build:  bd,
		name:   name,
		svcs:   svcs,
		target: &target{bases: bases, tokens: tokens, accounts: b.opts.accounts, numbers: b.numbers, cpu: replicasCPU(svcs)},
		events: events,
		topo:   tp,
	}
	if err := checkRepeat(ctx, d.target); err != nil {
		return nil, stop, fmt.Errorf("%s: %w", name, err)
	}
	if !bd.limit {
		d.created = 1 // the event of checkRepeat's create
	}
	if backend == "postgres" {
		d.store = store
	}
	if tp != nil {
		d.events = streamCounter{tp.stream}
	}
	return d, stop, nil
}

// measure measures concurrency c on d: creates, then, once the relay has
// delivered their events, the floor.
func (b *bench) measure(ctx context.Context, d *deployment, c, round int) (levelResult, error) {
	lvl := levelResult{Concurrency: c}
	what := fmt.Sprintf("%s: concurrency %d", d.name, c)
	if b.opts.rounds > 1 {
		what += fmt.Sprintf(", round %d", round+1)
	}
	var (
		err   error
		watch *pgWatch
	)
	b.say("%s: creates", what)
	if d.store != nil {
		if watch, err = startPGWatch(ctx, d.store.databaseURL(), len(d.svcs), b.opts.warmup); err != nil {
			return lvl, err
		}
	}
	measured := time.Now().Add(b.opts.warmup)
	lvl.Creates, err = d.target.load(ctx, createMode, c, b.opts.warmup, b.opts.duration)
	if watch != nil {
		scale, werr := watch.stop(ctx)
		err = errors.Join(err, werr)
		lvl.Scale = &scale
	}
	if err != nil {
		return lvl, err
	}
	d.created += lvl.Creates.answered[200]
	if d.events != nil {
		caughtUp, behind, err := waitForEvents(ctx, d.events, d.created, relayWait)
		if err != nil {
			return lvl, err
		}
		lvl.RelayCatchUpSeconds, lvl.RelayBehind = caughtUp.Seconds(), behind
		if behind > 0 {
			b.say("%s: the relay is %d events behind after %s; measuring the floor anyway", what, behind, relayWait)
		}
	}
	if d.topo != nil {
		n, err := d.events.count()
		if err != nil {
			return lvl, err
		}
		if lvl.DeliveryLag, err = deliveryLag(ctx, d.topo.stream, uint64(d.delivered)+1, uint64(n), measured); err != nil {
			return lvl, err
		}
		d.delivered = n
	}
	b.say("%s: floor", what)
	if lvl.Floor, err = d.target.load(ctx, floorMode, c, b.opts.warmup, b.opts.duration); err != nil {
		return lvl, err
	}
	lvl.finish()
	for _, svc := range d.svcs {
		if rss, err := procstat.PeakRSS(svc.PID()); err == nil {
			lvl.PeakRSSBytes = max(lvl.PeakRSSBytes, rss)
		}
	}
	b.say("%s: %.0f creates/s, %.0f floor/s, ratio %.3f", what, lvl.Creates.PerSecond, lvl.Floor.PerSecond, lvl.Ratio)
	return lvl, nil
}

// runExternal measures the phonesd at --url with --token.
func (b *bench) runExternal(ctx context.Context) (runResult, error) {
	res := runResult{Backend: "url"}
	t := &target{bases: []string{b.opts.url}, tokens: []string{b.opts.token}, accounts: b.opts.accounts, numbers: b.numbers}
	for _, c := range b.opts.concurrency {
		lvl := levelResult{Concurrency: c}
		var err error
		b.say("%s: concurrency %d: creates", b.opts.url, c)
		if lvl.Creates, err = t.load(ctx, createMode, c, b.opts.warmup, b.opts.duration); err != nil {
			return res, err
		}
		b.say("%s: concurrency %d: floor", b.opts.url, c)
		if lvl.Floor, err = t.load(ctx, floorMode, c, b.opts.warmup, b.opts.duration); err != nil {
			return res, err
		}
		lvl.finish()
		res.Levels = append(res.Levels, lvl)
	}
	return res, nil
}
