// Package httpapi is phonesd's HTTP transport, one pipeline from the
// connection to the domain: each API request is routed, authenticated,
// admitted, parsed and decoded exactly once, in the order of checks the
// contract sets, into the domain's own types (a phone.Candidate for a
// create, a phone.ValidPatch for an update, which only the domain's
// validation makes), which the service receives; its answer is
// written with the response types generated from api/openapi.json.
//
// What stays of ogen, and why: the schemas' Go types with their JSON
// encoders, so that every body the service sends has exactly the contract's
// shape, and the generated client, which the tests speak to the server
// with and the fuzz targets hold this package's decoder against. ogen's
// server is not generated: it routes, parses and decodes in an order of its
// own (parameters before the token's account, body fields in document
// order, duplicate keys accepted), so running it after the contract's checks
// meant doing every step twice.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/health"
	"github.com/phonesd/phonesd/internal/phone"
)

// Verifier checks bearer tokens.
type Verifier interface {
	// Cached returns the principal of a token verified before and still
	// valid, cheaply; false when the token must go through Verify.
	Cached(token string) (auth.Principal, bool)
	Verify(ctx context.Context, token string) (auth.Principal, error)
	// Ready reports whether a key set has been loaded.
	Ready() bool
}

// Phones is the domain service the operations call.
type Phones interface {
	Create(ctx context.Context, r phone.CreateRequest) (phone.Phone, error)
	Get(ctx context.Context, tenant string, account, id int64) (phone.Phone, error)
	List(ctx context.Context, q phone.ListQuery) (phone.Page, error)
	Update(ctx context.Context, r phone.UpdateRequest) (phone.Phone, error)
}

// Observer counts what the API answers, for metrics. Its arguments come
// from small fixed sets, never from what a client sent: operation names,
// the API's methods and "other", statuses and reasons.
type Observer interface {
	// Answered counts a request of operation, answered with status.
	Answered(operation, method string, status int, took time.Duration)
	// Refused counts an API request refused to protect the replica:
	// rate_limited, tenant_busy, overloaded, overloaded_unauthenticated,
	// body_timeout, keys_not_loaded or draining.
	Refused(reason string)
	// TokenRejected counts a 401, by the reason of auth.Error or missing.
	TokenRejected(reason string)
}

// Config holds what NewServer needs.
type Config struct {
	Logger *slog.Logger
	// RequestLog takes each request's line (see logRequest); Logger's
	// handler when nil. phonesd hands it one that writes in the
	// background.
	RequestLog slog.Handler
	Phones     Phones
	Verifier   Verifier
	// Health tells /readyz whether storage answers and how far the
	// outbox lags; required. The backlog metrics read the same probe.
	Health *health.Probe
	Spec   []byte // served at /openapi.json
	// EventSpec is the event contract, asyncapi.yaml, served at
	// /asyncapi.yaml; EventSpecJSON is the same document as JSON, served
	// at /asyncapi.json. /docs shows its events beside the operations.
	// Without them neither is served, and /docs shows the operations alone.
	EventSpec     []byte
	EventSpecJSON []byte
	// StorageTimeout bounds the storage work of one request, so that a stuck
	// database answers 500 instead of holding the client; required. The
	// service's configuration chooses it, and is its one home.
	StorageTimeout time.Duration
	// IdempotencyTTL is how long the answer to an Idempotency-Key is kept;
	// required, chosen by the service's configuration too.
	IdempotencyTTL time.Duration
	// RateLimit is the API requests a second each tenant may make, refilled
	// continuously; 0 turns rate limiting off.
	RateLimit float64
	// RateBurst is how many requests a tenant may make at once, the size of
	// its token bucket; less than 1 means 1.
	RateBurst int
	// MaxInFlight caps the authenticated API requests served at once, and
	// separately the requests whose token is being verified (a token
	// verified before, found by Verifier.Cached, takes no place there);
	// beyond either the API answers 503 at once. 0 turns both caps off.
	MaxInFlight int
	// MaxInFlightPerTenant caps one tenant's requests served at once;
	// beyond it that tenant gets 429. 0 turns the cap off.
	MaxInFlightPerTenant int
	// AccountShare is the share, above 0 and below 1, of its tenant's
	// rate, burst and places in progress that one account may take with
	// account-bound tokens, at least one request of each; beyond it that
	// account gets 429. 0 (or 1) gives an account its tenant's whole.
	AccountShare float64
	// BodyTimeout is how long a request body may take to arrive after the
	// headers; a slower one answers 408. 0: only the server's own timeouts.
	BodyTimeout time.Duration
	// Metrics counts what the API answers; nil counts nothing. Metrics
	// serves /metrics among the operational endpoints; nil serves none
	// (when they are served on an address of their own).
	Observer Observer
	Metrics  http.Handler
	// Tracer makes a server span per API request, the parent of the
	// service's; nil makes none. Propagator reads a request's W3C trace
	// context, traced or not, for its log line and its events.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// KeyFreshness makes /readyz warn when the key set grows stale.
	KeyFreshness auth.KeyFreshness
	// ReadyzChecksOnly keeps /readyz to its status and checks, without
	// the outbox backlog and the warnings: for an API whose operational
	// detail is served elsewhere, with the metrics, since /readyz needs no
	// token and a stale key set is news to an attacker.
	ReadyzChecksOnly bool
}

// Server is phonesd's HTTP handler.
type Server struct {
	log            *slog.Logger
	requestLog     slog.Handler
	phones         Phones
	verifier       Verifier
	health         *health.Probe
	keyFreshness   auth.KeyFreshness
	checksOnly     bool // /readyz without the outbox backlog and warnings
	spec           []byte
	eventSpec      []byte
	eventSpecJSON  []byte
	storageTimeout time.Duration
	idempotencyTTL time.Duration
	bodyTimeout    time.Duration
	draining       atomic.Bool
	operational    map[string]endpoint
	resources      [resourceCount]resource
	// methods are the methods the API answers: the metrics' method label
	// takes one of them, or "other".
	methods map[string]bool
	limiter *limiter[string] // nil: no rate limit
	// accountRate is each account's share of its tenant's rate; nil: none.
	accountRate *limiter[account]
	// verifying bounds the requests whose token is being checked, served
	// bounds the authenticated ones, perTenant each tenant's, perAccount
	// each account's share of its tenant's; nil: no bound.
	verifying  *gauge
	served     *gauge
	perTenant  *keyedGauges[string]
	perAccount *keyedGauges[account]
	observer   Observer
	metrics    http.Handler
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// NewServer returns the HTTP handler of the whole service. It returns an
// error when cfg's StorageTimeout or IdempotencyTTL is not positive, or
// its AccountShare is not from 0 to 1, or when the documents cannot make
// the /docs page.
func NewServer(cfg Config) (*Server, error) {
	if cfg.StorageTimeout <= 0 || cfg.IdempotencyTTL <= 0 {
		return nil, errors.New("httpapi config: StorageTimeout and IdempotencyTTL must be positive")
	}
	if !(cfg.AccountShare >= 0 && cfg.AccountShare <= 1) {
		return nil, errors.New("httpapi config: AccountShare must be from 0 to 1")
	}
	if cfg.RequestLog == nil {
		cfg.RequestLog = cfg.Logger.Handler()
	}
	s := &Server{
		log:            cfg.Logger,
		requestLog:     cfg.RequestLog,
		phones:         cfg.Phones,
		verifier:       cfg.Verifier,
		health:         cfg.Health,
		keyFreshness:   cfg.KeyFreshness,
		checksOnly:     cfg.ReadyzChecksOnly,
		spec:           cfg.Spec,
		eventSpec:      cfg.EventSpec,
		eventSpecJSON:  cfg.EventSpecJSON,
		storageTimeout: cfg.StorageTimeout,
		idempotencyTTL: cfg.IdempotencyTTL,
		bodyTimeout:    cfg.BodyTimeout,
		limiter:        newLimiter[string]("tenant", cfg.RateLimit, cfg.RateBurst, maxTenants),
		verifying:      newGauge(cfg.MaxInFlight),
		served:         newGauge(cfg.MaxInFlight),
		perTenant:      newKeyedGauges[string](cfg.MaxInFlightPerTenant),
		observer:       cfg.Observer,
		metrics:        cfg.Metrics,
		tracer:         cfg.Tracer,
		propagator:     cfg.Propagator,
	}
	if share := cfg.AccountShare; share > 0 && share < 1 {
		s.accountRate = newLimiter[account]("account", cfg.RateLimit*share, shareOf(max(cfg.RateBurst, 1), share), maxAccounts)
		s.perAccount = newKeyedGauges[account](shareOf(cfg.MaxInFlightPerTenant, share))
	}
	if s.observer == nil {
		s.observer = noObserver{}
	}
	if err := s.routes(); err != nil {
		return nil, err
	}
	return s, nil
}

// shareOf is share of n, rounded down but at least 1, so that an account
// never gets more than its share, nor nothing at all; 0 when n is 0 or
// less, which bounds nothing.
func shareOf(n int, share float64) int {
	if n <= 0 {
		return 0
	}
	return max(int(float64(n)*share), 1)
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := newExchange(w, r)
	defer s.finish(x, r)
	s.route(x, r)
}

// Drain makes the API answer 503 with Retry-After from now on, so that a
// load balancer moves clients elsewhere while in-flight requests finish.
func (s *Server) Drain() {
	s.draining.Store(true)
}

// noObserver counts nothing.
type noObserver struct{}

func (noObserver) Answered(string, string, int, time.Duration) {}
func (noObserver) Refused(string)                              {}
func (noObserver) TokenRejected(string)                        {}
