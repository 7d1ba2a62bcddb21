package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"phonesd/internal/idp"
	"phonesd/internal/launch"
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
	total := time.Duration(len(backends)*len(b.preloads())*len(b.opts.concurrency)*2) * phase
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
	for _, backend := range b.opts.backends {
		for _, preload := range b.preloads() {
			r, err := b.runBackend(ctx, backend, preload, work, bin, iss.JWKSURL, tokens)
			if r.Storage != nil || len(r.Levels) > 0 {
				rep.Runs = append(rep.Runs, r)
			}
			if err != nil {
				keep = true
				return rep, err
			}
		}
	}
	return rep, nil
}

// runBackend starts a phonesd on fresh storage of backend, holding preload
// phones, and measures each concurrency on it in turn.
func (b *bench) runBackend(ctx context.Context, backend string, preload int, work, bin, jwksURL string, tokens []string) (res runResult, err error) {
	res = runResult{Backend: backend, Preload: preload}
	name := backend
	if preload > 0 {
		name += "-preload-" + strconv.Itoa(preload)
	}
	dataDir := filepath.Join(work, name)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	env := map[string]string{
		"PHONES_DATA_DIR":     dataDir,
		"PHONES_JWKS_URL":     jwksURL,
		"PHONES_JWT_ISSUER":   benchIssuer,
		"PHONES_JWT_AUDIENCE": benchAudience,
		"PHONES_EVENTS_URL":   "file://" + filepath.Join(dataDir, "events.jsonl"),
		"PHONES_LOG_LEVEL":    "info",
		// The bench is one tenant at full speed: a per-tenant rate limit
		// would measure the limit, not the service (--env may set one).
		"PHONES_RATE_LIMIT": "0",
	}

	var store storageTarget
	switch backend {
	case "sqlite":
		store = sqliteTarget{dir: dataDir}
	case "postgres":
		db, err := createDatabase(ctx, b.opts.postgresURL)
		if err != nil {
			return res, err
		}
		b.say("%s: created database %s", name, db.name)
		defer func() {
			// The caller's context may have ended: the drop must still run.
			dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if dropErr := db.drop(dropCtx); dropErr != nil {
				err = errors.Join(err, dropErr)
			}
		}()
		store = postgresTarget{url: db.url}
	default:
		return res, fmt.Errorf("unknown backend %q", backend)
	}
	env["PHONES_DATABASE_URL"] = store.databaseURL()

	if preload > 0 {
		b.say("%s: preloading %d phones over %d accounts, %d per transaction", name, preload, b.opts.accounts, b.opts.batch)
		took, err := preloadPhones(ctx, store, preload, b.opts.accounts, b.opts.batch, func(done int, elapsed time.Duration) {
			b.say("%s: preloaded %d/%d phones (%.0f/s)", name, done, preload, float64(done)/elapsed.Seconds())
		})
		if err != nil {
			return res, fmt.Errorf("%s: preload: %w", name, err)
		}
		res.PreloadSeconds = took.Seconds()
	}

	b.say("%s: timing %d bare commits", name, b.opts.commits)
	st, err := store.commitLatency(ctx, b.opts.commits)
	if err != nil {
		return res, fmt.Errorf("%s: commit latency: %w", name, err)
	}
	res.Storage = &st

	svc, err := startPhonesd(ctx, bin, dataDir, env, b.opts.env)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	b.say("%s: phonesd pid %d at %s, logs in %s", name, svc.pid(), svc.base, svc.logPath)
	defer func() {
		if stopErr := svc.stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("%s: %w", name, stopErr))
		}
	}()

	t := &target{base: svc.base, tokens: tokens, accounts: b.opts.accounts, numbers: b.numbers}
	events := &lineCounter{path: filepath.Join(dataDir, "events.jsonl")}
	var created int64
	for _, c := range b.opts.concurrency {
		lvl := levelResult{Concurrency: c}
		b.say("%s: concurrency %d: creates", name, c)
		if lvl.Creates, err = t.load(ctx, createMode, c, b.opts.warmup, b.opts.duration); err != nil {
			return res, err
		}
		created += lvl.Creates.answered[200]
		caughtUp, behind, err := waitForEvents(ctx, events, created, relayWait)
		if err != nil {
			return res, err
		}
		lvl.RelayCatchUpSeconds, lvl.RelayBehind = caughtUp.Seconds(), behind
		if behind > 0 {
			b.say("%s: the relay is %d events behind after %s; measuring the floor anyway", name, behind, relayWait)
		}
		b.say("%s: concurrency %d: floor", name, c)
		if lvl.Floor, err = t.load(ctx, floorMode, c, b.opts.warmup, b.opts.duration); err != nil {
			return res, err
		}
		lvl.finish()
		if rss, err := svc.peakRSS(); err == nil {
			lvl.PeakRSSBytes = rss
		}
		b.say("%s: concurrency %d: %.0f creates/s, %.0f floor/s, ratio %.3f", name, c, lvl.Creates.PerSecond, lvl.Floor.PerSecond, lvl.Ratio)
		res.Levels = append(res.Levels, lvl)
	}
	return res, nil
}

// runExternal measures the phonesd at --url with --token.
func (b *bench) runExternal(ctx context.Context) (runResult, error) {
	res := runResult{Backend: "url"}
	t := &target{base: b.opts.url, tokens: []string{b.opts.token}, accounts: b.opts.accounts, numbers: b.numbers}
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
