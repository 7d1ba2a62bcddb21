// Package telemetry is what phonesd tells the people who run it about
// itself: Prometheus metrics on a registry of its own, OpenTelemetry
// traces exported over OTLP/HTTP when an endpoint is configured, and the
// log's lines written out in the background.
//
// No label ever carries a value from a request's path, an account, a
// phone, a tenant or a token: every label takes its values from a small
// fixed set (operations, the API's methods and "other", status codes,
// reasons, sinks), so that the number of series stays bounded whatever the
// traffic. The callers map what they count onto these sets; a test sends
// made-up methods, paths, headers and claims and checks that no series is
// added.
package telemetry

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds phonesd's metrics and the registry they are served from.
// Its methods are safe for concurrent use, and do nothing on a nil
// *Metrics, so that a component built without metrics needs no check.
type Metrics struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec
	durations      *prometheus.HistogramVec
	refusals       *prometheus.CounterVec
	tokens         *prometheus.CounterVec
	batchSizes     prometheus.Histogram
	commits        *prometheus.HistogramVec
	waiting        prometheus.Gauge
	delivered      *prometheus.CounterVec
	deliveryErrors *prometheus.CounterVec
	leaseHeld      prometheus.Gauge
}

// NewMetrics returns phonesd's metrics on a new registry, with the Go
// runtime's and the process's collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phonesd_http_requests_total",
			Help: "HTTP requests answered, by operation, method and status code.",
		}, []string{"operation", "method", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "phonesd_http_request_duration_seconds",
			Help:    "Time from a request's headers to its answer, by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"operation"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phonesd_http_refusals_total",
			Help: "API requests refused to protect the replica, by reason: rate_limited and tenant_busy (429), overloaded, keys_not_loaded and draining (503).",
		}, []string{"reason"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phonesd_token_rejections_total",
			Help: "Bearer tokens refused (401), by reason.",
		}, []string{"reason"}),
		batchSizes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "phonesd_group_commit_batch_size",
			Help:    "Creates committed together in one transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		commits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "phonesd_group_commit_duration_seconds",
			Help:    "Time to commit one batch of creates, by result: ok, or error.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "phonesd_group_commit_waiting_creates",
			Help: "Creates waiting for their group commit, queued or being committed: it grows while storage is slow or locked.",
		}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phonesd_outbox_events_delivered_total",
			Help: "Events the relay delivered, by sink: file or jetstream.",
		}, []string{"sink"}),
		deliveryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phonesd_outbox_delivery_errors_total",
			Help: "Delivery rounds of the relay that failed, by sink.",
		}, []string{"sink"}),
		leaseHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "phonesd_outbox_relay_lease_held",
			Help: "1 while this replica's relay holds the lease to deliver the outbox, else 0.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.durations, m.refusals, m.tokens,
		m.batchSizes, m.commits, m.waiting, m.delivered, m.deliveryErrors, m.leaseHeld,
	)
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Register adds a collector of figures read when scraped, such as a pool's
// connections.
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(c)
}

// RegisterPool exposes a connection pool's figures, read when scraped:
// connections in use, idle, and in all.
func (m *Metrics) RegisterPool(stats func() (acquired, idle, total int32)) error {
	gauge := func(name, help string, pick func(a, i, t int32) int32) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			return float64(pick(stats()))
		})
	}
	for _, c := range []prometheus.Collector{
		gauge("phonesd_db_pool_acquired_connections", "PostgreSQL connections in use.", func(a, _, _ int32) int32 { return a }),
		gauge("phonesd_db_pool_idle_connections", "PostgreSQL connections open and idle.", func(_, i, _ int32) int32 { return i }),
		gauge("phonesd_db_pool_total_connections", "PostgreSQL connections open.", func(_, _, t int32) int32 { return t }),
	} {
		if err := m.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// RegisterKeySetAge exposes how long ago the key set in use was fetched,
// read when scraped: age reports it, and false for keys that never age
// (development mode) or before the first fetch, shown as 0.
func (m *Metrics) RegisterKeySetAge(age func() (time.Duration, bool)) error {
	return m.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "phonesd_jwks_age_seconds",
		Help: "Seconds since the key set in use was fetched: it grows while refreshes fail. 0 for development keys, or before the first fetch.",
	}, func() float64 {
		if a, ok := age(); ok {
			return a.Seconds()
		}
		return 0
	}))
}

// RegisterBacklog exposes the outbox's backlog, read when scraped: the
// events waiting for delivery and the age of the oldest of them.
func (m *Metrics) RegisterBacklog(backlog func() (pending int64, oldestAge time.Duration, known bool)) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "phonesd_outbox_pending_events",
			Help: "Events in the outbox waiting for delivery (an upper bound on PostgreSQL when not 0); NaN while storage does not answer.",
		}, func() float64 {
			n, _, ok := backlog()
			if !ok {
				return math.NaN()
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "phonesd_outbox_oldest_pending_age_seconds",
			Help: "Age of the oldest event waiting for delivery, 0 when none waits; NaN while storage does not answer.",
		}, func() float64 {
			_, age, ok := backlog()
			if !ok {
				return math.NaN()
			}
			return age.Seconds()
		}),
	} {
		if err := m.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Answered counts an answered request and its duration. The caller gives
// a method from a fixed set (the API's, or "other"), never the request's
// own: a client may send any token as its method.
func (m *Metrics) Answered(operation, method string, status int, took time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(operation, method, statusCode(status)).Inc()
	m.durations.WithLabelValues(operation).Observe(took.Seconds())
}

// Refused counts a request refused to protect the replica.
func (m *Metrics) Refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

// TokenRejected counts a refused bearer token.
func (m *Metrics) TokenRejected(reason string) {
	if m != nil {
		m.tokens.WithLabelValues(reason).Inc()
	}
}

// Committed counts a group commit of size creates that took took.
func (m *Metrics) Committed(size int, took time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.batchSizes.Observe(float64(size))
	m.commits.WithLabelValues(result).Observe(took.Seconds())
}

// WaitingForCommit adds delta to the creates waiting for their group commit.
func (m *Metrics) WaitingForCommit(delta int) {
	if m != nil {
		m.waiting.Add(float64(delta))
	}
}

// Delivered counts a delivery round of n events to sink, or its failure.
func (m *Metrics) Delivered(sink string, n int, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.deliveryErrors.WithLabelValues(sink).Inc()
		return
	}
	m.delivered.WithLabelValues(sink).Add(float64(n))
}

// LeaseHeld records whether this replica's relay holds the lease.
func (m *Metrics) LeaseHeld(held bool) {
	if m == nil {
		return
	}
	v := 0.0
	if held {
		v = 1
	}
	m.leaseHeld.Set(v)
}

// statusCode is a status's label value without an allocation per request.
func statusCode(status int) string {
	if status >= 100 && status < len(statusCodes)+100 {
		return statusCodes[status-100]
	}
	return strconv.Itoa(status)
}

// statusCodes are the label values of statuses 100 to 599.
var statusCodes = func() [500]string {
	var s [500]string
	for i := range s {
		s[i] = strconv.Itoa(i + 100)
	}
	return s
}()
