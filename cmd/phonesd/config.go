package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"phonesd/internal/jetstream"
)

// config is the service's configuration, read from PHONES_* variables.
type config struct {
	addr           string
	dataDir        string
	databasePath   string // SQLite file
	postgresURL    string // set when PHONES_DATABASE_URL names PostgreSQL
	jwksURL        string
	issuer         string
	audience       string
	leeway         time.Duration
	maxTTL         time.Duration // longest token lifetime accepted; 0: any
	tokenCacheSize int32
	eventsPath     string // file sink; empty when events go to NATS
	nats           natsConfig
	retention      time.Duration
	storageTimeout time.Duration
	idempotencyTTL time.Duration
	dbMaxConns     int32
	dbStmtTimeout  time.Duration
	logLevel       slog.Level
	debugAddr      string // profiles; empty: off
	metricsAddr    string // /metrics on an address of its own; empty: on the API's
	// rateLimit is API requests a second per tenant; 0: off.
	rateLimit            float64
	rateBurst            int32
	maxInFlight          int32
	maxInFlightPerTenant int32
	bodyTimeout          time.Duration
	// jwksMaxStale is how old the last good key set may grow before it is
	// reported; 0: never.
	jwksMaxStale time.Duration
	// allowInsecure lets credentials and phone numbers cross the network
	// to a non-loopback database or broker without TLS.
	allowInsecure bool
}

// natsConfig is the NATS JetStream sink's part of the configuration; url is
// empty when events go to a file.
type natsConfig struct {
	url             string
	credsFile       string
	subjectPrefix   string
	stream          string
	duplicateWindow time.Duration
	replicas        int32 // of a stream phonesd creates
	// requireTLS refuses a server that offers no TLS: the URL carries
	// credentials to a host that is not loopback.
	requireTLS bool
}

// dev reports development mode: no key set configured, so phonesd signs and
// trusts its own tokens.
func (c config) dev() bool { return c.jwksURL == "" }

// databaseName names the database for the log, without credentials.
func (c config) databaseName() string {
	if c.postgresURL == "" {
		return "sqlite:" + c.databasePath
	}
	u, err := url.Parse(c.postgresURL)
	if err != nil {
		return "postgres"
	}
	return "postgres://" + u.Host + u.Path
}

// databaseSystem names the database engine, for traces.
func (c config) databaseSystem() string {
	if c.postgresURL == "" {
		return "sqlite"
	}
	return "postgresql"
}

// sinkName names the kind of sink events go to, for metrics.
func (c config) sinkName() string {
	if c.nats.url == "" {
		return "file"
	}
	return "jetstream"
}

// eventsName names where events go, for the log, without credentials.
func (c config) eventsName() string {
	if c.nats.url == "" {
		return "file://" + c.eventsPath
	}
	return jetstream.Redact(c.nats.url) + " stream " + c.nats.stream + " subjects " + c.nats.subjectPrefix + ".>"
}

// loadConfig reads the environment. Each error is one line naming the variable.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		addr:     envOr(getenv, "PHONES_ADDR", "127.0.0.1:8080"),
		dataDir:  envOr(getenv, "PHONES_DATA_DIR", "data"),
		jwksURL:  getenv("PHONES_JWKS_URL"),
		issuer:   getenv("PHONES_JWT_ISSUER"),
		audience: getenv("PHONES_JWT_AUDIENCE"),
	}
	var err error
	if c.dataDir, err = filepath.Abs(c.dataDir); err != nil {
		return c, fmt.Errorf("PHONES_DATA_DIR: %w", err)
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return c, fmt.Errorf("PHONES_ADDR: want host:port, got %q", c.addr)
	}
	if c.leeway, err = durationEnv(getenv, "PHONES_JWT_LEEWAY", 30*time.Second); err != nil {
		return c, err
	}
	if c.maxTTL, err = durationEnv(getenv, "PHONES_JWT_MAX_TTL", 24*time.Hour); err != nil {
		return c, err
	}
	if c.tokenCacheSize, err = intEnv(getenv, "PHONES_TOKEN_CACHE_SIZE", 10_000, 0, 1_000_000); err != nil {
		return c, err
	}
	if c.retention, err = durationEnv(getenv, "PHONES_OUTBOX_RETENTION", 7*24*time.Hour); err != nil {
		return c, err
	}
	if c.idempotencyTTL, err = durationEnv(getenv, "PHONES_IDEMPOTENCY_TTL", 24*time.Hour); err != nil {
		return c, err
	}
	if c.storageTimeout, err = durationEnv(getenv, "PHONES_STORAGE_TIMEOUT", 1500*time.Millisecond); err != nil {
		return c, err
	}
	if c.dbStmtTimeout, err = durationEnv(getenv, "PHONES_DB_STATEMENT_TIMEOUT", 5*time.Second); err != nil {
		return c, err
	}
	if c.dbMaxConns, err = intEnv(getenv, "PHONES_DB_MAX_CONNS", 16, 1, 1000); err != nil {
		return c, err
	}
	if c.debugAddr = getenv("PHONES_DEBUG_ADDR"); c.debugAddr != "" && !loopback(c.debugAddr) {
		return c, fmt.Errorf("PHONES_DEBUG_ADDR: profiles are served only on a loopback address, not %q", c.debugAddr)
	}
	if c.metricsAddr = getenv("PHONES_METRICS_ADDR"); c.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.metricsAddr); err != nil {
			return c, fmt.Errorf("PHONES_METRICS_ADDR: want host:port, got %q", c.metricsAddr)
		}
	}
	if err := c.logLevel.UnmarshalText([]byte(envOr(getenv, "PHONES_LOG_LEVEL", "info"))); err != nil {
		return c, fmt.Errorf("PHONES_LOG_LEVEL: want debug, info, warn or error")
	}
	if err := c.parseDatabase(getenv("PHONES_DATABASE_URL")); err != nil {
		return c, err
	}
	if err := c.parseEvents(getenv); err != nil {
		return c, err
	}
	if err := c.parseBackPressure(getenv); err != nil {
		return c, err
	}
	if c.jwksMaxStale, err = durationEnv(getenv, "PHONES_JWKS_MAX_STALE", 24*time.Hour); err != nil {
		return c, err
	}
	if c.dev() {
		// Set, they say a production key set was meant: starting in
		// development mode would trust a key in the data directory.
		for _, k := range []string{"PHONES_JWT_ISSUER", "PHONES_JWT_AUDIENCE", "PHONES_JWT_LEEWAY", "PHONES_JWT_MAX_TTL", "PHONES_JWKS_MAX_STALE"} {
			if getenv(k) != "" {
				return c, fmt.Errorf("PHONES_JWKS_URL is not set, but %s is: set PHONES_JWKS_URL to the issuer's key set, or unset %s for development mode", k, k)
			}
		}
	}
	if c.allowInsecure, err = boolEnv(getenv, "PHONES_ALLOW_INSECURE_TRANSPORT"); err != nil {
		return c, err
	}
	if err := c.checkTransport(); err != nil {
		return c, err
	}
	if c.jwksURL != "" && (c.issuer == "" || c.audience == "") {
		return c, errors.New("PHONES_JWT_ISSUER and PHONES_JWT_AUDIENCE are required with PHONES_JWKS_URL")
	}
	if c.dev() {
		// Both are signs of a production deployment that lost its key set
		// configuration; development tokens must never guard real data.
		if !loopback(c.addr) {
			return c, fmt.Errorf("development mode (no PHONES_JWKS_URL) listens only on a loopback address, not %q", c.addr)
		}
		if c.postgresURL != "" {
			return c, errors.New("development mode (no PHONES_JWKS_URL) refuses a PostgreSQL database: set PHONES_JWKS_URL, PHONES_JWT_ISSUER and PHONES_JWT_AUDIENCE")
		}
	}
	return c, nil
}

// parseDatabase accepts sqlite:PATH (relative to the working directory, or
// absolute as sqlite:/abs/path or sqlite:///abs/path) and postgres:// URLs.
func (c *config) parseDatabase(v string) error {
	switch {
	case v == "":
		c.databasePath = filepath.Join(c.dataDir, "phones.db")
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		c.postgresURL = v
	case strings.HasPrefix(v, "sqlite:"):
		p := strings.TrimPrefix(v, "sqlite:")
		if strings.HasPrefix(p, "//") {
			p = strings.TrimPrefix(p, "//")
			if !strings.HasPrefix(p, "/") {
				return fmt.Errorf("PHONES_DATABASE_URL: sqlite:// must be followed by an absolute path, as in sqlite:///var/lib/phonesd/phones.db")
			}
		}
		if p == "" {
			return fmt.Errorf("PHONES_DATABASE_URL: sqlite: needs a file path")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("PHONES_DATABASE_URL: %w", err)
		}
		c.databasePath = abs
	default:
		return fmt.Errorf("PHONES_DATABASE_URL: want sqlite:PATH or postgres://..., got a value of another scheme")
	}
	return nil
}

// parseEvents reads PHONES_EVENTS_URL, a file:// or nats:// URL, and the
// settings of the NATS sink.
func (c *config) parseEvents(getenv func(string) string) error {
	v := getenv("PHONES_EVENTS_URL")
	if scheme, _, _ := strings.Cut(v, "://"); scheme == "nats" || scheme == "tls" {
		return c.parseNATS(v, getenv)
	}
	// Set without a NATS URL they would be ignored, and a deployment that
	// lost PHONES_EVENTS_URL would write its events to a file no one reads.
	for _, k := range []string{"PHONES_NATS_CREDS", "PHONES_NATS_SUBJECT_PREFIX", "PHONES_NATS_STREAM", "PHONES_NATS_DUPLICATE_WINDOW", "PHONES_NATS_REPLICAS"} {
		if getenv(k) != "" {
			return fmt.Errorf("%s is set, but PHONES_EVENTS_URL is not a nats:// URL: events would go to a file", k)
		}
	}
	if v == "" {
		c.eventsPath = filepath.Join(c.dataDir, "events.jsonl")
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "file" {
		// The value is not quoted: a mistyped broker URL may hold a password.
		return errors.New("PHONES_EVENTS_URL: want file:///absolute/path.jsonl or nats://host:port, got a value of another scheme")
	}
	if (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
		return fmt.Errorf("PHONES_EVENTS_URL: want file:///absolute/path.jsonl, got %q", v)
	}
	c.eventsPath = u.Path
	return nil
}

// parseNATS reads a NATS URL, or several separated by commas, and the
// PHONES_NATS_* settings.
func (c *config) parseNATS(v string, getenv func(string) string) error {
	for part := range strings.SplitSeq(v, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			// The value is not quoted: it may hold a password.
			return errors.New("PHONES_EVENTS_URL: want nats://host:port or tls://host:port (user:password@ allowed), or several separated by commas")
		}
	}
	n := natsConfig{
		url:           v,
		credsFile:     getenv("PHONES_NATS_CREDS"),
		subjectPrefix: envOr(getenv, "PHONES_NATS_SUBJECT_PREFIX", "accounts"),
		stream:        envOr(getenv, "PHONES_NATS_STREAM", "ACCOUNTS_EVENTS"),
	}
	if n.credsFile != "" {
		if err := jetstream.CheckCreds(n.credsFile); err != nil {
			return fmt.Errorf("PHONES_NATS_CREDS: %w", err)
		}
	}
	if err := jetstream.CheckSubjectPrefix(n.subjectPrefix); err != nil {
		return fmt.Errorf("PHONES_NATS_SUBJECT_PREFIX: %w", err)
	}
	if err := jetstream.CheckStreamName(n.stream); err != nil {
		return fmt.Errorf("PHONES_NATS_STREAM: %w", err)
	}
	var err error
	if n.duplicateWindow, err = durationEnv(getenv, "PHONES_NATS_DUPLICATE_WINDOW", jetstream.DefaultDuplicateWindow); err != nil {
		return err
	}
	if n.duplicateWindow == 0 {
		return errors.New("PHONES_NATS_DUPLICATE_WINDOW: want a positive duration such as 10m")
	}
	// JetStream's own bounds: 1 (one server), up to 5 (a cluster's Raft
	// group).
	if n.replicas, err = intEnv(getenv, "PHONES_NATS_REPLICAS", 1, 1, 5); err != nil {
		return err
	}
	c.nats = n
	return nil
}

// Back-pressure defaults, per replica. A tenant is a whole organisation and
// its phones change at the pace of its customers and back office: 1000
// requests a second on one replica is far above that, yet a runaway client
// of one tenant takes at most a fraction of a replica (phonesbench: about
// 6000 creates a second on 2 CPUs) from the others. The burst absorbs two
// seconds of it, such as a batch job's start. Development mode has no
// limit: its only tenant is its developer.
const (
	defaultRateLimit = 1000
	// defaultMaxInFlight caps the requests a replica works on at once.
	// Throughput stops growing by about 64 concurrent requests; at 512 a
	// request waits some 70 ms, still far inside the storage timeout, so a
	// replica that merely runs hot sheds nothing. When storage stalls,
	// each request holds its place up to the storage timeout; the cap then
	// answers the excess 503 at once instead of 500 after the timeout. Each
	// holds at most a 64 KiB body: 512 bodies are at most 32 MiB.
	defaultMaxInFlight = 512
	// maxInFlightCap is the group-commit queue's size: with no more requests
	// in flight than that, a create never waits for room in the queue.
	maxInFlightCap = 4096
)

// parseBackPressure reads the per-tenant rate limit and the cap on requests
// in flight.
func (c *config) parseBackPressure(getenv func(string) string) error {
	def := float64(defaultRateLimit)
	if c.dev() {
		def = 0
	}
	c.rateLimit = def
	if v := getenv("PHONES_RATE_LIMIT"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || !(n == 0 || (n >= 0.01 && n <= 1e6)) {
			return fmt.Errorf("PHONES_RATE_LIMIT: want requests a second per tenant, 0 (off) or from 0.01 to 1000000, got %q", v)
		}
		c.rateLimit = n
	}
	if c.rateLimit == 0 && getenv("PHONES_RATE_BURST") != "" {
		return errors.New("PHONES_RATE_BURST is set, but rate limiting is off (PHONES_RATE_LIMIT is 0, or unset in development mode)")
	}
	// Two seconds' worth by default, at least 1.
	defBurst := int32(min(math.Ceil(2*c.rateLimit), 2e6))
	var err error
	if c.rateBurst, err = intEnv(getenv, "PHONES_RATE_BURST", max(defBurst, 1), 1, 2_000_000); err != nil {
		return err
	}
	if c.maxInFlight, err = intEnv(getenv, "PHONES_MAX_IN_FLIGHT", defaultMaxInFlight, 1, maxInFlightCap); err != nil {
		return err
	}
	// A quarter by default: four tenants whose requests all stall (slow
	// bodies, a stuck account) leave the replica to nobody else only when
	// they are four.
	if c.maxInFlightPerTenant, err = intEnv(getenv, "PHONES_MAX_IN_FLIGHT_PER_TENANT", max(c.maxInFlight/4, 1), 1, maxInFlightCap); err != nil {
		return err
	}
	if c.bodyTimeout, err = durationEnv(getenv, "PHONES_BODY_TIMEOUT", 5*time.Second); err != nil {
		return err
	}
	if c.bodyTimeout == 0 {
		return errors.New("PHONES_BODY_TIMEOUT: want a positive duration such as 5s")
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func durationEnv(getenv func(string) string, key string, def time.Duration) (time.Duration, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: want a duration such as 30s, got %q", key, v)
	}
	return d, nil
}

func boolEnv(getenv func(string) string, key string) (bool, error) {
	v := getenv(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false, got %q", key, v)
	}
	return b, nil
}

func intEnv(getenv func(string) string, key string, def, lo, hi int32) (int32, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || int32(n) < lo || int32(n) > hi {
		return 0, fmt.Errorf("%s: want an integer from %d to %d, got %q", key, lo, hi, v)
	}
	return int32(n), nil
}

// loopback reports whether addr's host is a loopback name or address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && loopbackHost(host)
}

// loopbackHost reports whether host is a loopback name or address.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
