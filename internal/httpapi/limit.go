package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Back-pressure: guards that keep a replica answering under load, and one
// tenant from taking it from the others.
//
// Requests whose token is not yet known to be good are bounded on their own
// (MaxInFlight of them); checking a token never waits on I/O, so this bound
// is reached only by a flood, and then costs the flood alone.
//
// Once authenticated, a request takes one of the replica's places
// (MaxInFlight) and one of its tenant's (MaxInFlightPerTenant) for as long
// as it is served, its body's arrival included. Beyond the replica's
// places it answers 503 at once rather than queueing work that would miss
// its deadline; beyond the tenant's, 429, so that a tenant whose requests
// stall (slow bodies, say) stalls itself only.
//
// Rate limiting gives each tenant a token bucket, so that one tenant's
// runaway client cannot take a replica from the others; it answers 429
// with the seconds until the bucket holds a token again.
//
// The operational endpoints are never refused: an orchestrator must still
// see that an overloaded replica is alive and ready.

// gauge counts requests in progress against a cap.
type gauge struct {
	max int64
	n   atomic.Int64
}

// newGauge returns a gauge of limit requests; nil, which bounds nothing,
// when limit is 0 or less.
func newGauge(limit int) *gauge {
	if limit <= 0 {
		return nil
	}
	return &gauge{max: int64(limit)}
}

// enter takes a place and reports whether there was one.
func (g *gauge) enter() bool {
	if g == nil {
		return true
	}
	if g.n.Add(1) > g.max {
		g.n.Add(-1)
		return false
	}
	return true
}

// leave gives back a place enter took.
func (g *gauge) leave() {
	if g != nil {
		g.n.Add(-1)
	}
}

// tenantGauges counts each tenant's requests in progress against a cap.
type tenantGauges struct {
	max int
	mu  sync.Mutex
	n   map[string]int // only tenants with requests in progress
}

// newTenantGauges returns gauges of limit requests per tenant; nil, which
// bounds nothing, when limit is 0 or less.
func newTenantGauges(limit int) *tenantGauges {
	if limit <= 0 {
		return nil
	}
	return &tenantGauges{max: limit, n: map[string]int{}}
}

func (t *tenantGauges) enter(tenant string) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n[tenant] >= t.max {
		return false
	}
	t.n[tenant]++
	return true
}

func (t *tenantGauges) leave(tenant string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n[tenant]--; t.n[tenant] <= 0 {
		delete(t.n, tenant)
	}
}

// admit takes one of the replica's places and one of the tenant's for an
// authenticated request, answering 503 or 429 when there is none; once
// admitted, the request calls dismiss when it is served. A full replica is
// a 503 whoever asks, so that a load balancer moves the request elsewhere.
func (s *Server) admit(w http.ResponseWriter, tenant string) bool {
	if !s.served.enter() {
		s.observer.Refused("overloaded")
		writeOverloaded(w)
		return false
	}
	if !s.perTenant.enter(tenant) {
		s.observer.Refused("tenant_busy")
		s.served.leave()
		w.Header().Set("Retry-After", "1")
		writeMessage(w, http.StatusTooManyRequests, msgTenantBusy)
		return false
	}
	return true
}

// dismiss gives back the places admit took.
func (s *Server) dismiss(tenant string) {
	s.served.leave()
	s.perTenant.leave(tenant)
}

// allowTenant spends one token of tenant's bucket; when it is empty it
// answers 429 with Retry-After and returns false. Either way the answer
// states the tenant's limit and what is left of it, in the RateLimit-Policy
// and RateLimit fields of the IETF draft "RateLimit header fields for HTTP"
// (draft-ietf-httpapi-ratelimit-headers-10), chosen over the older
// X-RateLimit-* fields because their Reset means seconds in some APIs and a
// time in others, while the draft's are defined, in the same seconds as
// Retry-After.
func (s *Server) allowTenant(w http.ResponseWriter, tenant string) bool {
	if s.limiter == nil {
		return true
	}
	ok, wait, left := s.limiter.take(tenant)
	h := w.Header()
	h.Set("RateLimit-Policy", s.limiter.policy)
	h.Set("RateLimit", `"tenant";r=`+strconv.Itoa(int(left))+`;t=`+strconv.Itoa(s.limiter.secondsToFull(left)))
	if ok {
		return true
	}
	s.observer.Refused("rate_limited")
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter(wait)))
	writeMessage(w, http.StatusTooManyRequests, msgRateLimited)
	return false
}

// retryAfter is wait in whole seconds for Retry-After: rounded up, so that a
// client that waits that long finds a token, and at least 1, since 0 would
// invite an immediate retry.
func retryAfter(wait time.Duration) int {
	secs := int(math.Ceil(wait.Seconds()))
	return max(secs, 1)
}

// Bounds on the limiter's memory. A bucket that has been idle long enough to
// fill up again is the same as a new one, so sweeping it loses nothing.
const (
	sweepEvery = time.Minute
	maxTenants = 1 << 16
	maxWait    = 24 * time.Hour
)

// limiter is a token bucket per tenant: each holds up to burst tokens,
// refills at rate tokens a second, and a request spends one.
type limiter struct {
	rate       float64
	burst      float64
	now        func() time.Time
	sweepEvery time.Duration
	maxTenants int

	mu        sync.Mutex
	buckets   map[string]*bucket
	nextSweep time.Time
	// policy is the RateLimit-Policy field: a quota of burst requests per
	// the seconds a bucket takes to refill from empty.
	policy string
}

// bucket is one tenant's tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns a limiter of rate requests a second per tenant with
// bursts of burst (at least 1); nil, which limits nothing, when rate is 0 or less.
func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	l := &limiter{
		rate:       rate,
		burst:      float64(max(burst, 1)),
		now:        time.Now,
		sweepEvery: sweepEvery,
		maxTenants: maxTenants,
		buckets:    map[string]*bucket{},
	}
	l.policy = `"tenant";q=` + strconv.Itoa(int(l.burst)) + `;w=` + strconv.Itoa(l.secondsToFull(0))
	return l
}

// take spends a token of tenant's bucket and reports whether there was one;
// when there was not, it also returns how long until there is. left is what
// the bucket holds afterwards.
func (l *limiter) take(tenant string) (ok bool, wait time.Duration, left float64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !now.Before(l.nextSweep) {
		l.sweep(now)
	}
	b, ok := l.buckets[tenant]
	if !ok {
		if len(l.buckets) >= l.maxTenants {
			// More tenants active at once than the cap: drop any one. At
			// worst that tenant starts again with a full bucket.
			for t := range l.buckets {
				delete(l.buckets, t)
				break
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[tenant] = b
	}
	b.tokens = l.tokensAt(b, now)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0, b.tokens
	}
	// Capped, so that a tiny rate cannot overflow a Duration.
	secs := math.Min((1-b.tokens)/l.rate, maxWait.Seconds())
	return false, time.Duration(secs * float64(time.Second)), b.tokens
}

// secondsToFull is how long a bucket holding left takes to refill, in
// whole seconds rounded up, capped as Retry-After is.
func (l *limiter) secondsToFull(left float64) int {
	return int(math.Ceil(math.Min((l.burst-left)/l.rate, maxWait.Seconds())))
}

// tokensAt is what b holds at now: refilled since b.last, up to burst.
func (l *limiter) tokensAt(b *bucket, now time.Time) float64 {
	elapsed := now.Sub(b.last).Seconds()
	if elapsed <= 0 {
		return b.tokens
	}
	return math.Min(l.burst, b.tokens+elapsed*l.rate)
}

// sweep forgets the buckets that are full again.
func (l *limiter) sweep(now time.Time) {
	for t, b := range l.buckets {
		if l.tokensAt(b, now) >= l.burst {
			delete(l.buckets, t)
		}
	}
	l.nextSweep = now.Add(l.sweepEvery)
}
