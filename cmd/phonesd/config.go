package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/phonesd/phonesd/internal/sink/jetstream"
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
	// accountShare is the share of its tenant's rate and places one
	// account may take with account-bound tokens.
	accountShare float64
	bodyTimeout  time.Duration
	// jwksMaxStale is how old the last good key set may grow before it is
	// reported; 0: never.
	jwksMaxStale time.Duration
	// allowInsecure lets credentials and phone numbers cross the network
	// to a non-loopback database or broker without TLS.
	allowInsecure bool
	// unverifiedDBHosts are the PostgreSQL hosts, not loopback, reached
	// over TLS that checks no certificate (sslmode=require): warned of.
	unverifiedDBHosts []string
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
	// requireTLS refuses a server that offers no TLS: the URL names a
	// host that is not loopback.
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

// keySetName names where the keys of tokens come from, for the log,
// without the key set URL's credentials or query.
func (c config) keySetName() string {
	if c.dev() {
		return "development key in " + c.dataDir
	}
	u, err := url.Parse(c.jwksURL)
	if err != nil {
		return "key set"
	}
	return u.Scheme + "://" + u.Host + u.Path
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

// The files phonesd keeps in the data directory by default.
const (
	databaseFile = "phones.db"
	eventsFile   = "events.jsonl"
)

// loadConfig reads the environment, taking the default of every variable
// left unset from the table of variables (vars.go). Each error is one line
// naming the variable.
func loadConfig(getenv func(string) string) (config, error) {
	e := newEnv(getenv)
	c := config{
		addr:     e.get("PHONES_ADDR"),
		jwksURL:  e.get("PHONES_JWKS_URL"),
		issuer:   e.get("PHONES_JWT_ISSUER"),
		audience: e.get("PHONES_JWT_AUDIENCE"),
	}
	var err error
	if c.dataDir, err = filepath.Abs(e.get("PHONES_DATA_DIR")); err != nil {
		return c, fmt.Errorf("PHONES_DATA_DIR: %w", err)
	}
	// The database's and the events' defaults follow the data directory,
	// read above.
	for _, read := range []func(env) error{c.readListeners, c.readTokens, c.readStorage, c.parseDatabase, c.parseEvents, c.parseBackPressure} {
		if err := read(e); err != nil {
			return c, err
		}
	}
	if c.allowInsecure, err = e.bool("PHONES_ALLOW_INSECURE_TRANSPORT"); err != nil {
		return c, err
	}
	if err := c.checkTransport(); err != nil {
		return c, err
	}
	return c, c.checkMode()
}

// readListeners reads the addresses phonesd serves on and its log level.
func (c *config) readListeners(e env) error {
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return fmt.Errorf("PHONES_ADDR: want host:port, got %q", c.addr)
	}
	if c.debugAddr = e.getenv("PHONES_DEBUG_ADDR"); c.debugAddr != "" && !loopback(c.debugAddr) {
		return fmt.Errorf("PHONES_DEBUG_ADDR: profiles are served only on a loopback address, not %q", c.debugAddr)
	}
	if c.metricsAddr = e.getenv("PHONES_METRICS_ADDR"); c.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.metricsAddr); err != nil {
			return fmt.Errorf("PHONES_METRICS_ADDR: want host:port, got %q", c.metricsAddr)
		}
	}
	if err := c.logLevel.UnmarshalText([]byte(e.get("PHONES_LOG_LEVEL"))); err != nil {
		return errors.New("PHONES_LOG_LEVEL: want debug, info, warn or error")
	}
	return nil
}

// readTokens reads how tokens are verified. Zero is refused where it
// cannot mean "none": the package given it would take it for its own
// default, or refuse it.
func (c *config) readTokens(e env) error {
	var err error
	if c.leeway, err = e.positiveDuration("PHONES_JWT_LEEWAY"); err != nil {
		return err
	}
	if c.maxTTL, err = e.duration("PHONES_JWT_MAX_TTL"); err != nil {
		return err
	}
	if c.tokenCacheSize, err = e.int32("PHONES_TOKEN_CACHE_SIZE", 0, 1_000_000); err != nil {
		return err
	}
	if c.jwksMaxStale, err = e.duration("PHONES_JWKS_MAX_STALE"); err != nil {
		return err
	}
	if c.dev() {
		// Set, they say a production key set was meant: starting in
		// development mode would trust a key in the data directory.
		for _, k := range []string{"PHONES_JWT_ISSUER", "PHONES_JWT_AUDIENCE", "PHONES_JWT_LEEWAY", "PHONES_JWT_MAX_TTL", "PHONES_JWKS_MAX_STALE"} {
			if e.set(k) {
				return fmt.Errorf("PHONES_JWKS_URL is not set, but %s is: set PHONES_JWKS_URL to the issuer's key set, or unset %s for development mode", k, k)
			}
		}
	}
	return nil
}

// readStorage reads the bounds on storage: how long it is waited for, how
// long what it keeps is kept, and PostgreSQL's pool.
func (c *config) readStorage(e env) error {
	var err error
	if c.retention, err = e.positiveDuration("PHONES_OUTBOX_RETENTION"); err != nil {
		return err
	}
	if c.idempotencyTTL, err = e.positiveDuration("PHONES_IDEMPOTENCY_TTL"); err != nil {
		return err
	}
	if c.storageTimeout, err = e.positiveDuration("PHONES_STORAGE_TIMEOUT"); err != nil {
		return err
	}
	if c.dbStmtTimeout, err = e.positiveDuration("PHONES_DB_STATEMENT_TIMEOUT"); err != nil {
		return err
	}
	c.dbMaxConns, err = e.int32("PHONES_DB_MAX_CONNS", 1, 1000)
	return err
}

// checkMode keeps production and development apart: a key set comes with
// its issuer and audience, and development tokens never guard real data.
func (c config) checkMode() error {
	if !c.dev() {
		if c.issuer == "" || c.audience == "" {
			return errors.New("PHONES_JWT_ISSUER and PHONES_JWT_AUDIENCE are required with PHONES_JWKS_URL")
		}
		return nil
	}
	// Both are signs of a production deployment that lost its key set
	// configuration.
	if !loopback(c.addr) {
		return fmt.Errorf("development mode (no PHONES_JWKS_URL) listens only on a loopback address, not %q", c.addr)
	}
	if c.postgresURL != "" {
		return errors.New("development mode (no PHONES_JWKS_URL) refuses a PostgreSQL database: set PHONES_JWKS_URL, PHONES_JWT_ISSUER and PHONES_JWT_AUDIENCE")
	}
	return nil
}

// parseDatabase accepts sqlite:PATH (relative to the working directory, or
// absolute as sqlite:/abs/path or sqlite:///abs/path) and postgres:// URLs.
func (c *config) parseDatabase(e env) error {
	switch v := e.getenv("PHONES_DATABASE_URL"); {
	case v == "":
		c.databasePath = filepath.Join(c.dataDir, databaseFile)
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
func (c *config) parseEvents(e env) error {
	v := e.getenv("PHONES_EVENTS_URL")
	if scheme, _, _ := strings.Cut(v, "://"); scheme == "nats" || scheme == "tls" {
		return c.parseNATS(v, e)
	}
	// Set without a NATS URL they would be ignored, and a deployment that
	// lost PHONES_EVENTS_URL would write its events to a file no one reads.
	for _, k := range []string{"PHONES_NATS_CREDS", "PHONES_NATS_SUBJECT_PREFIX", "PHONES_NATS_STREAM", "PHONES_NATS_DUPLICATE_WINDOW", "PHONES_NATS_REPLICAS"} {
		if e.set(k) {
			return fmt.Errorf("%s is set, but PHONES_EVENTS_URL is not a nats:// URL: events would go to a file", k)
		}
	}
	if v == "" {
		c.eventsPath = filepath.Join(c.dataDir, eventsFile)
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
// PHONES_NATS_* settings, checked by the sink's own rules.
func (c *config) parseNATS(v string, e env) error {
	n := natsConfig{
		url:           v,
		credsFile:     e.get("PHONES_NATS_CREDS"),
		subjectPrefix: e.get("PHONES_NATS_SUBJECT_PREFIX"),
		stream:        e.get("PHONES_NATS_STREAM"),
	}
	c.nats = n
	var invalid *jetstream.ConfigError
	if err := natsSinkConfig(*c, nil).Check(); errors.As(err, &invalid) {
		return fmt.Errorf("%s: %w", natsVariable(invalid.Field), err)
	} else if err != nil {
		return fmt.Errorf("PHONES_EVENTS_URL: %w", err)
	}
	var err error
	if c.nats.duplicateWindow, err = e.positiveDuration("PHONES_NATS_DUPLICATE_WINDOW"); err != nil {
		return err
	}
	c.nats.replicas, err = e.int32("PHONES_NATS_REPLICAS", 1, jetstream.MaxReplicas)
	return err
}

// natsVariable is the variable that sets field of the sink's configuration.
func natsVariable(field string) string {
	switch field {
	case "CredsFile":
		return "PHONES_NATS_CREDS"
	case "SubjectPrefix":
		return "PHONES_NATS_SUBJECT_PREFIX"
	case "Stream":
		return "PHONES_NATS_STREAM"
	default:
		return "PHONES_EVENTS_URL"
	}
}

// maxInFlightCap is the group-commit queue's size: with no more requests in
// flight than that, a create never waits for room in the queue.
const maxInFlightCap = 4096

// maxRateBurst is the largest PHONES_RATE_BURST.
const maxRateBurst = 2_000_000

// parseBackPressure reads the per-tenant rate limit and the cap on requests
// in flight.
func (c *config) parseBackPressure(e env) error {
	v := e.get("PHONES_RATE_LIMIT")
	if c.dev() && !e.set("PHONES_RATE_LIMIT") {
		v = e.devDefault("PHONES_RATE_LIMIT")
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || !(n == 0 || (n >= 0.01 && n <= 1e6)) {
		return fmt.Errorf("PHONES_RATE_LIMIT: want requests a second per tenant, 0 (off) or from 0.01 to 1000000, got %q", v)
	}
	c.rateLimit = n
	if c.rateLimit == 0 && e.set("PHONES_RATE_BURST") {
		return errors.New("PHONES_RATE_BURST is set, but rate limiting is off (PHONES_RATE_LIMIT is 0, or unset in development mode)")
	}
	if c.rateBurst, err = e.int32Or("PHONES_RATE_BURST", rateBurstDefault(c.rateLimit), 1, maxRateBurst); err != nil {
		return err
	}
	if c.maxInFlight, err = e.int32("PHONES_MAX_IN_FLIGHT", 1, maxInFlightCap); err != nil {
		return err
	}
	if c.maxInFlightPerTenant, err = e.int32Or("PHONES_MAX_IN_FLIGHT_PER_TENANT", perTenantDefault(c.maxInFlight), 1, maxInFlightCap); err != nil {
		return err
	}
	v = e.get("PHONES_ACCOUNT_SHARE")
	if c.accountShare, err = strconv.ParseFloat(v, 64); err != nil || !(c.accountShare >= 0.01 && c.accountShare <= 1) {
		return fmt.Errorf("PHONES_ACCOUNT_SHARE: want a share of the tenant's from 0.01 to 1, got %q", v)
	}
	if c.bodyTimeout, err = e.positiveDuration("PHONES_BODY_TIMEOUT"); err != nil {
		return err
	}
	return nil
}

// env reads the PHONES_ variables. A variable left unset takes its default
// from the table of variables, spelt as a value of the variable and read
// like one, so that each default is written once, there. The defaults that
// follow other variables (a derivation or a defNote in the table) are
// derived by loadConfig instead, with the functions the table spells them
// with.
type env struct {
	getenv   func(string) string
	defaults map[string]variable
}

func newEnv(getenv func(string) string) env {
	e := env{getenv: getenv, defaults: map[string]variable{}}
	for _, v := range variables() {
		e.defaults[v.name] = v
	}
	return e
}

// set reports whether key is set.
func (e env) set(key string) bool { return e.getenv(key) != "" }

// get returns key's value, or its default when it is unset.
func (e env) get(key string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return e.defaults[key].def
}

// devDefault returns key's default in development mode.
func (e env) devDefault(key string) string {
	if v := e.defaults[key]; v.devDef != "" {
		return v.devDef
	}
	return e.get(key)
}

func (e env) duration(key string) (time.Duration, error) {
	v := e.get(key)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: want a duration such as 30s, got %q", key, v)
	}
	return d, nil
}

func (e env) positiveDuration(key string) (time.Duration, error) {
	d, err := e.duration(key)
	if err == nil && d == 0 {
		return 0, fmt.Errorf("%s: want a positive duration such as %s", key, e.defaults[key].def)
	}
	return d, err
}

func (e env) bool(key string) (bool, error) {
	v := e.get(key)
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false, got %q", key, v)
	}
	return b, nil
}

func (e env) int32(key string, lo, hi int32) (int32, error) {
	return parseInt32(key, e.get(key), lo, hi)
}

// int32Or is int32 for a variable whose default follows others: def.
func (e env) int32Or(key string, def, lo, hi int32) (int32, error) {
	if !e.set(key) {
		return def, nil
	}
	return parseInt32(key, e.getenv(key), lo, hi)
}

func parseInt32(key, v string, lo, hi int32) (int32, error) {
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

// warnExposure logs, at start, an API on an address that is not loopback
// with the metrics beside it: /metrics and /readyz need no token, and show
// anyone who reaches the API its traffic, its outbox backlog and a key set
// gone stale.
func (c config) warnExposure(log *slog.Logger) {
	if c.metricsAddr == "" && !loopback(c.addr) {
		log.Warn("PHONES_ADDR is not loopback and PHONES_METRICS_ADDR is unset: /metrics and the detail of /readyz (outbox backlog, a stale key set) are served to anyone who reaches the API; set PHONES_METRICS_ADDR to an address of the internal network",
			"addr", c.addr)
	}
}
