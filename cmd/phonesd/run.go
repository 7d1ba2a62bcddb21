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
	"github.com/phonesd/phonesd/internal/httpapi"
	"github.com/phonesd/phonesd/internal/jetstream"
	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/postgres"
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
func run(ctx context.Context, args []string, env map[string]string, stdout, stderr io.Writer) error {
	getenv := func(name string) string { return env[name] }
	if len(args) > 1 {
		switch args[1] {
		case "token":
			return mintCommand(args[2:], getenv, stdout)
		case "issuer":
			return issuerCommand(ctx, args[2:], getenv, stdout)
		case "check":
			return checkCommand(ctx, args[2:], env, stdout)
		case "healthcheck":
			return healthcheckCommand(ctx, getenv)
		case "version":
			return printVersion(stdout)
		case "help", "-h", "-help", "--help":
			return printHelp(stdout)
		default:
			return fmt.Errorf("unknown command %q (phonesd help lists the commands)", args[1])
		}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	handler := newLogHandler(stdout, cfg.logLevel, cfg.dev())
	log := slog.New(handler)
	// What phonesd check checks, so that it stops where a start would.
	if err := checkStart(cfg, env, log); err != nil {
		return err
	}
	if err := createDataDir(cfg.dataDir); err != nil {
		return err
	}
	metrics := telemetry.NewMetrics()
	tracing, err := telemetry.StartTracing(ctx, getenv, serviceVersion())
	if err != nil {
		return err
	}
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(shutdownCtx); err != nil {
			log.Warn("spans left unexported", "err", err)
		}
	}()
	db, lease, err := openStorage(ctx, cfg, groupcommit.Instruments{Committed: metrics.Committed, Waiting: metrics.WaitingForCommit, Tracer: tracing.Tracer})
	if err != nil {
		return err
	}
	defer db.Close()
	if pool, ok := db.(interface{ PoolStats() (int32, int32, int32) }); ok {
		if err := metrics.RegisterPool(pool.PoolStats); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}

	sink, err := openSink(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer sink.Close()
	relay := outbox.NewRelay(db, sink, outbox.Options{
		Retention: cfg.retention,
		Lease:     lease,
		Logger:    log,
		Instruments: outbox.Instruments{
			Delivered: func(n int, err error) { metrics.Delivered(cfg.sinkName(), n, err) },
			LeaseHeld: metrics.LeaseHeld,
			Tracer:    tracing.Tracer,
		},
	})

	verifier, devKey, err := newVerifier(cfg, log)
	if err != nil {
		return err
	}
	if err := metrics.RegisterKeySetAge(verifier.KeySetAge); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	var store phone.Store = db
	if tracing.Tracer != nil {
		store = telemetry.TraceStore(db, tracing.Tracer, cfg.databaseSystem())
	}
	// /metrics is served with the API unless it has an address of its own.
	apiMetrics := metrics.Handler()
	if cfg.metricsAddr != "" {
		apiMetrics = nil
	}

	phones := phone.NewService(store, relay.Notify)
	keyFreshness := httpapi.KeyFreshness{Age: verifier.KeySetAge, MaxStale: cfg.jwksMaxStale}
	srv, err := httpapi.NewServer(httpapi.Config{
		Logger:               log,
		Phones:               phones,
		Verifier:             verifier,
		Storage:              db,
		Spec:                 api.Spec,
		StorageTimeout:       cfg.storageTimeout,
		IdempotencyTTL:       cfg.idempotencyTTL,
		RateLimit:            cfg.rateLimit,
		RateBurst:            int(cfg.rateBurst),
		MaxInFlight:          int(cfg.maxInFlight),
		MaxInFlightPerTenant: int(cfg.maxInFlightPerTenant),
		BodyTimeout:          cfg.bodyTimeout,
		Observer:             metrics,
		Metrics:              apiMetrics,
		Tracer:               tracing.Tracer,
		Propagator:           tracing.Propagator,
		KeyFreshness:         keyFreshness,
	})
	if err != nil {
		return fmt.Errorf("build server: %w", err)
	}
	if err := metrics.RegisterBacklog(func() (int64, time.Duration, bool) { return srv.Backlog(ctx) }); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("PHONES_ADDR: %w", err)
	}
	httpServer := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
	}

	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	if cfg.debugAddr != "" {
		if err := serveDebug(bg, cfg.debugAddr, log); err != nil {
			return err
		}
	}
	if cfg.metricsAddr != "" {
		if err := serveAside(bg, "PHONES_METRICS_ADDR", cfg.metricsAddr, metrics.Handler(), log); err != nil {
			return err
		}
	}
	go verifier.Run(bg)
	go watchKeySetAge(bg, keyFreshness, keySetAgeCheck, staleKeySetReminder, log)
	go purgeKeys(bg, phones, log)
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		relay.Run(bg)
	}()

	// Announced before serving, so that whoever sees the service answer has
	// the announcement too; connections wait in the listener's backlog.
	log.Info("phonesd listening", "addr", ln.Addr().String(), "database", cfg.databaseName(), "events", cfg.eventsName(), "development_mode", cfg.dev())
	if cfg.dev() {
		log.Warn("DEVELOPMENT MODE: tokens are signed by the key in the data directory; set PHONES_JWKS_URL, PHONES_JWT_ISSUER and PHONES_JWT_AUDIENCE for production")
		if err := announceDev(stderr, devKey, ln.Addr().String(), cfg.maxTTL); err != nil {
			log.Warn("could not mint the development token", "err", err)
		}
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.Serve(ln) }()

	select {
	case err := <-serveErr:
		stopBackground()
		<-relayDone
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests")
	srv.Drain()
	// Answers from now on close their connection, so that no client sends
	// its next request on a connection Shutdown is about to close unread.
	httpServer.SetKeepAlivesEnabled(false)
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), drainTimeout)
	defer cancelDrain()
	if err := httpServer.Shutdown(drainCtx); err != nil {
		log.Warn("requests still running at the drain deadline", "err", err)
	}
	stopBackground()
	<-relayDone
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), flushTimeout)
	defer cancelFlush()
	if err := relay.Flush(flushCtx); err != nil {
		log.Warn("events left in the outbox for the next start", "err", err)
	}
	log.Info("stopped")
	return nil
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
// returns the lease the relays of replicas sharing the database take turns
// with; nil for SQLite, which only this process opens.
func openStorage(ctx context.Context, cfg config, instruments groupcommit.Instruments) (storage, outbox.Lease, error) {
	if cfg.postgresURL != "" {
		db, err := postgres.Open(ctx, cfg.postgresURL, postgres.Options{
			MaxConns:         cfg.dbMaxConns,
			StatementTimeout: cfg.dbStmtTimeout,
			Instruments:      instruments,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("open PostgreSQL: %w", err)
		}
		return db, db.RelayLease(), nil
	}
	db, err := sqlite.Open(ctx, cfg.databasePath, sqlite.Options{Instruments: instruments})
	if err != nil {
		return nil, nil, fmt.Errorf("open SQLite: %w", err)
	}
	return db, nil, nil
}

// openSink returns where the relay delivers events: the JSON Lines file, or
// NATS JetStream. A broker that cannot be reached does not stop the start;
// one that answers with an unusable stream does.
func openSink(ctx context.Context, cfg config, log *slog.Logger) (outbox.Sink, error) {
	if cfg.nats.url == "" {
		sink, err := outbox.NewFileSink(cfg.eventsPath)
		if err != nil {
			return nil, fmt.Errorf("PHONES_EVENTS_URL: %w", err)
		}
		return sink, nil
	}
	sink, err := jetstream.NewSink(ctx, natsSinkConfig(cfg, log))
	switch {
	case errors.Is(err, jetstream.ErrStream):
		return nil, fmt.Errorf("PHONES_NATS_STREAM: %w", err)
	case errors.Is(err, jetstream.ErrNoTLS):
		return nil, fmt.Errorf("PHONES_EVENTS_URL: %w (its credentials would cross the network in clear text: use tls://, or PHONES_ALLOW_INSECURE_TRANSPORT=true where the network encrypts it)", err)
	case err != nil:
		return nil, fmt.Errorf("PHONES_EVENTS_URL: %w", err)
	}
	return sink, nil
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
