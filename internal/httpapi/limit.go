package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Back-pressure: two guards that keep a replica answering under load.
//
// Shedding caps the API requests being served at once. It runs before the
// token is verified, so that refusing costs almost nothing, and answers 503
// at once rather than queueing work that would miss its deadline anyway.
// The operational endpoints are never shed: an orchestrator must still see
// that an overloaded replica is alive and ready.
//
// Rate limiting gives each tenant a token bucket, so that one tenant's
// runaway client cannot take a replica from the others. It runs right after
// the token is verified, the first moment the tenant is known, and answers
// 429 with the seconds until the bucket holds a token again.

// shedder counts the API requests in flight against a cap.
type shedder struct {
	max      int64
	inFlight atomic.Int64
}

// newShedder returns a shedder of limit requests in flight; nil, which
// sheds nothing, when limit is 0 or less.
func newShedder(limit int) *shedder {
	if limit <= 0 {
		return nil
	}
	return &shedder{max: int64(limit)}
}

// shed answers 503 to the requests beyond the cap on requests in flight.
func (s *Server) shed(next http.Handler) http.Handler {
	if s.shedder == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.shedder.inFlight.Add(1) > s.shedder.max {
			s.shedder.inFlight.Add(-1)
			w.Header().Set("Retry-After", "1")
			writeMessage(w, http.StatusServiceUnavailable, msgOverloaded)
			return
		}
		defer s.shedder.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// allowTenant spends one token of tenant's bucket; when it is empty it
// answers 429 with Retry-After and returns false.
func (s *Server) allowTenant(w http.ResponseWriter, tenant string) bool {
	if s.limiter == nil {
		return true
	}
	ok, wait := s.limiter.take(tenant)
	if ok {
		return true
	}
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
	return &limiter{
		rate:       rate,
		burst:      float64(max(burst, 1)),
		now:        time.Now,
		sweepEvery: sweepEvery,
		maxTenants: maxTenants,
		buckets:    map[string]*bucket{},
	}
}

// take spends a token of tenant's bucket and reports whether there was one;
// when there was not, it also returns how long until there is.
func (l *limiter) take(tenant string) (bool, time.Duration) {
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
		return true, 0
	}
	// Capped, so that a tiny rate cannot overflow a Duration.
	wait := math.Min((1-b.tokens)/l.rate, maxWait.Seconds())
	return false, time.Duration(wait * float64(time.Second))
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
