package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/groupcommit"
	"github.com/phonesd/phonesd/internal/health"
	"github.com/phonesd/phonesd/internal/httpapi"
	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/postgres"
	"github.com/phonesd/phonesd/internal/sink/file"
	"github.com/phonesd/phonesd/internal/sink/jetstream"
	"github.com/phonesd/phonesd/internal/sqlite"
	"github.com/phonesd/phonesd/internal/telemetry"
)

// Shutdown budgets: in-flight requests get drainTimeout to finish, then the
// relay gets flushTimeout to deliver what is pending (the rest stays in the
// outbox for the next start).
const (
	drainTimeout = 15 * time.Second
	flushTimeout = 20 * time.Second
)

// run is the whole program; main only supplies the process's environment.
// It reads as the service's parts, each opened in turn and closed in the
// reverse order.
func run(ctx context.Context, args []string, env map[string]string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		return runCommand(ctx, args[1], args[2:], env, stdout)
	}
	getenv := func(name string) string { return env[name] }
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	setGCPercent(env)
	logs := openLog(stdout, cfg)
	defer logs.close() // last, so that every line of the shutdown is written out
	logHandler, log := logs.handler, slog.New(logs.handler)
	// What phonesd check checks, so that it stops where a start would.
	if err := checkStart(cfg, env, log); err != nil {
		return err
	}
	if err := createDataDir(cfg.dataDir); err != nil {
		return err
	}
	// Taken first and released last: nothing of the data directory is
	// opened, created or cut by a second process on it.
	unlock, err := lockStateDirs(cfg.stateDirs(), log)
	if err != nil {
		return err
	}
	defer unlock()
	metrics := telemetry.NewMetrics()
	tracing, err := telemetry.StartTracing(ctx, getenv, serviceVersion())
	if err != nil {
		return err
	}
	defer stopTracing(tracing, log)
	db, relayParts, err := openStorage(ctx, cfg, groupcommit.Instruments{Committed: metrics.Committed, Waiting: metrics.WaitingForCommit, Tracer: tracing.Tracer})
	if err != nil {
		return err
	}
	defer db.Close()
	sink, err := openSink(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer sink.Close()
	relay := newRelay(cfg, db, sink, relayParts, log, metrics, tracing)
	verifier, devKey, err := newVerifier(cfg, log)
	if err != nil {
		return err
	}
	phones := phone.NewService(tracedStore(cfg, db, tracing), relay.Notify)
	keyFreshness := auth.KeyFreshness{Age: verifier.KeySetAge, MaxStale: cfg.jwksMaxStale}
	srv, err := newAPI(ctx, cfg, apiParts{log: log, requestLog: logs.requests, phones: phones, verifier: verifier, db: db, keyFreshness: keyFreshness, metrics: metrics, tracing: tracing})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("PHONES_ADDR: %w", err)
	}
	var activity requestActivity
	httpServer := newHTTPServer(srv, logHandler, &activity)
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	if err := serveAsides(bg, cfg, metrics, log); err != nil {
		return err
	}
	relayDone := runBackground(bg, verifier, keyFreshness, phones, relay, log)
	stop := func() { stopBackground(); <-relayDone }

	// Announced before serving, so that whoever sees the service answer has
	// the announcement too; connections wait in the listener's backlog.
	announce(cfg, ln.Addr().String(), devKey, log, stderr)
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.Serve(ln) }()
	select {
	case err := <-serveErr:
		stop()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown(srv, httpServer, &activity, relay, stop, log)
	return nil
}

// runCommand runs the subcommand name (phonesd name args...).
func runCommand(ctx context.Context, name string, args []string, env map[string]string, stdout io.Writer) error {
	getenv := func(name string) string { return env[name] }
	switch name {
	case "token":
		return mintCommand(args, getenv, stdout)
	case "issuer":
		return issuerCommand(ctx, args, getenv, stdout)
	case "check":
		return checkCommand(ctx, args, env, stdout)
	case "healthcheck":
		return healthcheckCommand(ctx, getenv)
	case "version":
		return printVersion(stdout)
	case "help", "-h", "-help", "--help":
		return printHelp(stdout)
	default:
		return fmt.Errorf("unknown command %q (phonesd help lists the commands)", name)
	}
}

// stopTracing exports the spans still buffered, for a few seconds at most.
func stopTracing(tracing *telemetry.Tracing, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tracing.Shutdown(ctx); err != nil {
		log.Warn("spans left unexported", "err", err)
	}
}

// relayParts are what the storage gives the relay beside its outbox: the
// lease among replicas, and the handoff of committed events, where the
// storage has them.
type relayParts struct {
	lease   outbox.Lease
	handoff *outbox.Handoff
}

// newRelay returns the relay from db's outbox to sink, reporting to metrics
// and traces.
func newRelay(cfg config, db storage, sink outbox.Sink, parts relayParts, log *slog.Logger, metrics *telemetry.Metrics, tracing *telemetry.Tracing) *outbox.Relay {
	return outbox.NewRelay(db, sink, outbox.Options{
		Retention: cfg.retention,
		Lease:     parts.lease,
		Handoff:   parts.handoff,
		Logger:    log,
		Instruments: outbox.Instruments{
			Delivered: func(n int, err error) { metrics.Delivered(cfg.sinkName(), n, err) },
			LeaseHeld: metrics.LeaseHeld,
			Tracer:    tracing.Tracer,
		},
	})
}

// tracedStore is db, with a span for each call when tracing is on.
func tracedStore(cfg config, db storage, tracing *telemetry.Tracing) phone.Store {
	if tracing.Tracer == nil {
		return db
	}
	return telemetry.TraceStore(db, tracing.Tracer, cfg.databaseSystem())
}

// apiParts are the parts the API is built on.
type apiParts struct {
	log          *slog.Logger
	requestLog   slog.Handler
	phones       *phone.Service
	verifier     *auth.Verifier
	db           storage
	keyFreshness auth.KeyFreshness
	metrics      *telemetry.Metrics
	tracing      *telemetry.Tracing
}

// newAPI builds the API's handler from p, and registers the metrics that
// read the key set, the pool and the outbox backlog.
func newAPI(ctx context.Context, cfg config, p apiParts) (*httpapi.Server, error) {
	if err := p.metrics.RegisterKeySetAge(p.verifier.KeySetAge); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if pool, ok := p.db.(interface{ PoolStats() (int32, int32, int32) }); ok {
		if err := p.metrics.RegisterPool(pool.PoolStats); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	// The backlog metrics answer from the probe /readyz answers from, so
	// that scrapes, like health checks, cost the database at most one
	// query a second.
	probe := health.NewProbe(p.db)
	if err := p.metrics.RegisterBacklog(func() (int64, time.Duration, bool) { return probe.Backlog(ctx) }); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	eventSpec, err := api.AsyncAPIJSON()
	if err != nil {
		return nil, fmt.Errorf("event contract: %w", err)
	}
	// /metrics is served with the API unless it has an address of its own.
	apiMetrics := p.metrics.Handler()
	if cfg.metricsAddr != "" {
		apiMetrics = nil
	}
	srv, err := httpapi.NewServer(httpapi.Config{
		Logger:               p.log,
		RequestLog:           p.requestLog,
		Phones:               p.phones,
		Verifier:             p.verifier,
		Health:               probe,
		Spec:                 api.Spec,
		EventSpec:            api.AsyncAPI,
		EventSpecJSON:        eventSpec,
		StorageTimeout:       cfg.storageTimeout,
		IdempotencyTTL:       cfg.idempotencyTTL,
		RateLimit:            cfg.rateLimit,
		RateBurst:            int(cfg.rateBurst),
		MaxInFlight:          int(cfg.maxInFlight),
		MaxInFlightPerTenant: int(cfg.maxInFlightPerTenant),
		AccountShare:         cfg.accountShare,
		BodyTimeout:          cfg.bodyTimeout,
		Observer:             p.metrics,
		Metrics:              apiMetrics,
		Tracer:               p.tracing.Tracer,
		Propagator:           p.tracing.Propagator,
		KeyFreshness:         p.keyFreshness,
		// Operational detail goes where the metrics go.
		ReadyzChecksOnly: cfg.metricsAddr != "",
	})
	if err != nil {
		return nil, fmt.Errorf("build server: %w", err)
	}
	return srv, nil
}

// newHTTPServer serves h with bounds on every phase of a connection; its
// own errors go to the log at warning level, and activity learns when
// requests come, for the shutdown's pause before idle connections close.
func newHTTPServer(h http.Handler, logHandler slog.Handler, activity *requestActivity) *http.Server {
	return &http.Server{
		ConnState:         activity.track,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logHandler, slog.LevelWarn),
	}
}

// serveAsides serves, until ctx ends, the profiles and the metrics on
// addresses of their own, where configured.
func serveAsides(ctx context.Context, cfg config, metrics *telemetry.Metrics, log *slog.Logger) error {
	if cfg.debugAddr != "" {
		if err := serveDebug(ctx, cfg.debugAddr, log); err != nil {
			return err
		}
	}
	if cfg.metricsAddr != "" {
		if err := serveAside(ctx, "PHONES_METRICS_ADDR", cfg.metricsAddr, metrics.Handler(), log); err != nil {
			return err
		}
	}
	return nil
}

// runBackground starts, until ctx ends, the work beside the requests: the
// key set's refresh and its watch, the purge of idempotency keys and the
// relay. The channel it returns is closed once the relay has stopped.
func runBackground(ctx context.Context, verifier *auth.Verifier, keyFreshness auth.KeyFreshness, phones *phone.Service, relay *outbox.Relay, log *slog.Logger) <-chan struct{} {
	go verifier.Run(ctx)
	go watchKeySetAge(ctx, keyFreshness, keySetAgeCheck, staleKeySetReminder, log)
	go purgeKeys(ctx, phones, log)
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		relay.Run(ctx)
	}()
	return relayDone
}

// announce logs that phonesd listens on addr, and in development mode
// prints how to reach it with a token.
func announce(cfg config, addr string, devKey *auth.DevKey, log *slog.Logger, stderr io.Writer) {
	log.Info("phonesd listening", "addr", addr, "database", cfg.databaseName(), "events", cfg.eventsName(), "development_mode", cfg.dev())
	if !cfg.dev() {
		return
	}
	log.Warn("DEVELOPMENT MODE: tokens are signed by the key in the data directory; set PHONES_JWKS_URL, PHONES_JWT_ISSUER and PHONES_JWT_AUDIENCE for production")
	if err := announceDev(stderr, devKey, addr, cfg.maxTTL); err != nil {
		log.Warn("could not mint the development token", "err", err)
	}
}

// shutdown drains the requests in flight within drainTimeout, stops the
// background work (stopBackground returns once the relay has stopped), then
// gives the relay flushTimeout to deliver what is pending.
func shutdown(srv *httpapi.Server, httpServer *http.Server, activity *requestActivity, relay *outbox.Relay, stopBackground func(), log *slog.Logger) {
	log.Info("shutting down: draining requests")
	// /readyz fails from now on, and each request that arrives is answered
	// 503 with Connection: close, those already written on idle keep-alive
	// connections included, until requests stop coming (idleQuiet).
	srv.Drain()
	activity.waitQuiet(idleQuiet, idleGrace)
	// Answers from now on close their connection, so that no client sends
	// its next request on a connection Shutdown is about to close unread.
	// This also closes the idle connections.
	httpServer.SetKeepAlivesEnabled(false)
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), drainTimeout)
	defer cancelDrain()
	if err := httpServer.Shutdown(drainCtx); err != nil {
		log.Warn("requests still running at the drain deadline", "err", err)
	}
	stopBackground()
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), flushTimeout)
	defer cancelFlush()
	if err := relay.Flush(flushCtx); err != nil {
		log.Warn("events left in the outbox for the next start", "err", err)
	}
	log.Info("stopped")
}

// warnUnknownVariables logs each PHONES_ variable of env that phonesd does
// not read, with the known name closest to it: a misspelt variable would
// otherwise leave its setting at the default without a word.
func warnUnknownVariables(log *slog.Logger, env map[string]string) {
	unknown := unknownVariables(env)
	for _, name := range slices.Sorted(maps.Keys(unknown)) {
		log.Warn("unknown variable ignored", "variable", name, "closest_known", unknown[name])
	}
}

// purgeInterval is how often expired idempotency keys are deleted.
const purgeInterval = 10 * time.Minute

// purgeKeys deletes expired idempotency keys now and then, until ctx ends.
// Expired keys are already ignored; purging only keeps the table small.
func purgeKeys(ctx context.Context, phones *phone.Service, log *slog.Logger) {
	t := time.NewTicker(purgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := phones.PurgeKeys(ctx); err != nil && ctx.Err() == nil {
			log.Warn("purging idempotency keys failed", "err", err, "deleted", n)
		} else if n > 0 {
			log.Debug("purged idempotency keys", "deleted", n)
		}
	}
}

// storage is what phonesd keeps in its database: phones and their outbox.
type storage interface {
	phone.Store
	outbox.Store
	Ping(ctx context.Context) error
	Close() error
}

// openStorage opens the configured database and migrates it. It also
// returns what the relay needs of it beside the outbox: for PostgreSQL the
// lease the relays of replicas sharing the database take turns with; for
// SQLite, which only this process opens and whose outbox's order is its
// single writer's commit order, the handoff of the events it commits.
func openStorage(ctx context.Context, cfg config, instruments groupcommit.Instruments) (storage, relayParts, error) {
	if cfg.postgresURL != "" {
		db, err := postgres.Open(ctx, cfg.postgresURL, postgres.Options{
			MaxConns:         cfg.dbMaxConns,
			StatementTimeout: cfg.dbStmtTimeout,
			Instruments:      instruments,
		})
		if err != nil {
			return nil, relayParts{}, fmt.Errorf("open PostgreSQL: %w", err)
		}
		return db, relayParts{lease: db.RelayLease()}, nil
	}
	handoff := outbox.NewHandoff()
	db, err := sqlite.Open(ctx, cfg.databasePath, sqlite.Options{Instruments: instruments, Committed: handoff.Committed})
	if err != nil {
		return nil, relayParts{}, fmt.Errorf("open SQLite: %w", err)
	}
	return db, relayParts{handoff: handoff}, nil
}

// openSink returns where the relay delivers events: the JSON Lines file, or
// NATS JetStream. A broker that cannot be reached does not stop the start;
// one that answers with an unusable stream does.
func openSink(ctx context.Context, cfg config, log *slog.Logger) (outbox.Sink, error) {
	if cfg.nats.url == "" {
		sink, err := file.NewSink(cfg.eventsPath)
		if err != nil {
			return nil, fmt.Errorf("PHONES_EVENTS_URL: %w", err)
		}
		return sink, nil
	}
	sink, err := jetstream.NewSink(ctx, natsSinkConfig(cfg, log))
	if err != nil {
		return nil, sinkError(err)
	}
	return sink, nil
}

// sinkError is the one line naming the variable to fix for an error of the
// NATS sink, at a start or in phonesd check -connect.
func sinkError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrStream):
		return fmt.Errorf("PHONES_NATS_STREAM: %w", err)
	case errors.Is(err, jetstream.ErrNoTLS):
		return fmt.Errorf("PHONES_EVENTS_URL: %w; a NATS server that is not loopback must offer TLS, since events carry phone numbers: enable TLS on the server, or set PHONES_ALLOW_INSECURE_TRANSPORT=true where the network encrypts it", err)
	default:
		return fmt.Errorf("PHONES_EVENTS_URL: %w", err)
	}
}

// natsSinkConfig is the NATS JetStream sink's configuration.
func natsSinkConfig(cfg config, log *slog.Logger) jetstream.Config {
	return jetstream.Config{
		URL:             cfg.nats.url,
		CredsFile:       cfg.nats.credsFile,
		SubjectPrefix:   cfg.nats.subjectPrefix,
		Stream:          cfg.nats.stream,
		DuplicateWindow: cfg.nats.duplicateWindow,
		Replicas:        int(cfg.nats.replicas),
		RequireTLS:      cfg.nats.requireTLS,
		Logger:          log,
	}
}

// newVerifier returns the token verifier: the configured JWKS, or in
// development mode the key kept in the data directory.
func newVerifier(cfg config, log *slog.Logger) (*auth.Verifier, *auth.DevKey, error) {
	if !cfg.dev() {
		v, err := auth.NewVerifier(auth.Config{
			JWKSURL:   cfg.jwksURL,
			Issuer:    cfg.issuer,
			Audience:  cfg.audience,
			Leeway:    cfg.leeway,
			MaxTTL:    cfg.maxTTL,
			CacheSize: int(cfg.tokenCacheSize),
			Logger:    log,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("PHONES_JWKS_URL: %w", err)
		}
		return v, nil, nil
	}
	key, err := auth.LoadOrCreateDevKey(cfg.dataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("development key: %w", err)
	}
	v, err := auth.NewVerifier(auth.Config{
		Keys:      key.KeySet(),
		Issuer:    auth.DevIssuer,
		Audience:  auth.DevAudience,
		Leeway:    cfg.leeway,
		MaxTTL:    cfg.maxTTL,
		CacheSize: int(cfg.tokenCacheSize),
		Logger:    log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("development verifier: %w", err)
	}
	return v, key, nil
}
