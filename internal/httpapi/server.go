// Package httpapi is phonesd's HTTP transport: it checks each request in the
// order the contract sets, hands it to the server generated from
// api/openapi.json, and maps domain results and errors to statuses.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"phonesd/internal/auth"
	"phonesd/internal/httpapi/oas"
	"phonesd/internal/phone"
)

// Verifier checks bearer tokens.
type Verifier interface {
	Verify(ctx context.Context, token string) (auth.Principal, error)
	Ready() bool
}

// Phones is the domain service the handlers call.
type Phones interface {
	Create(ctx context.Context, r phone.CreateRequest) (phone.Phone, error)
	Get(ctx context.Context, tenant string, account, id int64) (phone.Phone, error)
	List(ctx context.Context, q phone.ListQuery) (phone.Page, error)
	Update(ctx context.Context, r phone.UpdateRequest) (phone.Phone, error)
}

// Storage is what readiness asks of the database: that it answers, and how
// far the outbox's delivery lags.
type Storage interface {
	Ping(ctx context.Context) error
	OutboxStats(ctx context.Context) (pending int64, oldest time.Time, err error)
}

// Config holds what NewServer needs.
type Config struct {
	Logger   *slog.Logger
	Phones   Phones
	Verifier Verifier
	Storage  Storage
	Spec     []byte // served at /openapi.json
	// StorageTimeout bounds the storage work of one request, so that a stuck
	// database answers 500 instead of holding the client. 0 means 5s.
	StorageTimeout time.Duration
	// IdempotencyTTL is how long the answer to an Idempotency-Key is kept.
	// 0 means 24h.
	IdempotencyTTL time.Duration
	// RateLimit is the API requests a second each tenant may make, refilled
	// continuously; 0 turns rate limiting off.
	RateLimit float64
	// RateBurst is how many requests a tenant may make at once, the size of
	// its token bucket; less than 1 means 1.
	RateBurst int
	// MaxInFlight caps the API requests served at once; beyond it the API
	// answers 503 at once. 0 turns the cap off.
	MaxInFlight int
}

// Server is phonesd's HTTP handler.
type Server struct {
	log            *slog.Logger
	phones         Phones
	verifier       Verifier
	storage        Storage
	spec           []byte
	storageTimeout time.Duration
	idempotencyTTL time.Duration
	oas            *oas.Server
	draining       atomic.Bool
	root           http.Handler
	limiter        *limiter // nil: no rate limit
	shedder        *shedder // nil: no cap on requests in flight
}

// NewServer returns the HTTP handler of the whole service.
func NewServer(cfg Config) (*Server, error) {
	s := &Server{
		log:            cfg.Logger,
		phones:         cfg.Phones,
		verifier:       cfg.Verifier,
		storage:        cfg.Storage,
		spec:           cfg.Spec,
		storageTimeout: cfg.StorageTimeout,
		limiter:        newLimiter(cfg.RateLimit, cfg.RateBurst),
		shedder:        newShedder(cfg.MaxInFlight),
	}
	if s.storageTimeout == 0 {
		s.storageTimeout = 5 * time.Second
	}
	s.idempotencyTTL = cfg.IdempotencyTTL
	if s.idempotencyTTL == 0 {
		s.idempotencyTTL = 24 * time.Hour
	}
	api, err := oas.NewServer(handler{s}, securityHandler{},
		oas.WithErrorHandler(ogenErrorHandler(s.log)),
		oas.WithNotFound(func(w http.ResponseWriter, r *http.Request) {
			writeMessage(w, http.StatusNotFound, msgNotFound)
		}),
		oas.WithMethodNotAllowed(func(w http.ResponseWriter, r *http.Request, allowed string) {
			w.Header().Set("Allow", allowed)
			writeMessage(w, http.StatusMethodNotAllowed, msgMethodNotAllowed)
		}),
	)
	if err != nil {
		return nil, err
	}
	s.oas = api
	s.root = s.routes()
	return s, nil
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.root.ServeHTTP(w, r)
}

// Drain makes the API answer 503 with Retry-After from now on, so that a
// load balancer moves clients elsewhere while in-flight requests finish.
func (s *Server) Drain() {
	s.draining.Store(true)
}
