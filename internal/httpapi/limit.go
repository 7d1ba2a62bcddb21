package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
)

// Back-pressure: guards that keep a replica answering under load, and one
// tenant from taking it from the others.
//
// Requests whose token is not yet known to be good are bounded on their own
// (MaxInFlight of them); checking a token never waits on I/O, so this bound
// is reached only by a flood, and then costs the flood alone: a token
// verified before (cached) is recognised without taking a place there.
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
// Within a tenant, an account-bound token goes to one customer's app, not
// to the bank: its account gets a share (AccountShare) of the tenant's
// places and rate, a bucket and places of its own counted before the
// tenant's, so that one customer cannot starve the tenant's other callers.
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

// account names one account of a tenant, as an account-bound token does.
// Tokens bound by external_account_id alone name account 0: they share one.
type account struct {
	tenant string
	id     int64
}

// accountOf is the account p is bound to; false for a tenant-wide token.
func accountOf(p auth.Principal) (account, bool) {
	return account{p.Tenant, p.Account}, p.AccountBound
}

// keyedGauges counts each key's requests in progress against a cap. It
// holds only the keys with requests in progress, which are already counted
// by the replica's gauge: its memory is bounded by that gauge's.
type keyedGauges[K comparable] struct {
	max int
	mu  sync.Mutex
	n   map[K]int
}

// newKeyedGauges returns gauges of limit requests per key; nil, which
// bounds nothing, when limit is 0 or less.
func newKeyedGauges[K comparable](limit int) *keyedGauges[K] {
	if limit <= 0 {
		return nil
	}
	return &keyedGauges[K]{max: limit, n: map[K]int{}}
}

func (g *keyedGauges[K]) enter(key K) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[key] >= g.max {
		return false
	}
	g.n[key]++
	return true
}

func (g *keyedGauges[K]) leave(key K) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[key]--; g.n[key] <= 0 {
		delete(g.n, key)
	}
}

// admit takes one of the replica's places, one of the account's share for
// an account-bound token, and one of the tenant's, or returns the refusal
// (503 or 429) when there is none; once admitted, the request calls
// dismiss when it is served. A full replica is a 503 whoever asks, so that
// a load balancer moves the request elsewhere. The account's share is
// checked before the tenant's, so that a request refused for its account
// never holds, even for an instant, a place its tenant's other callers
// could have had. Both busy refusals count as tenant_busy: the guard is
// the tenant's, shared out.
func (s *Server) admit(p auth.Principal) error {
	if !s.served.enter() {
		return errOverloaded
	}
	acct, bound := accountOf(p)
	if bound && !s.perAccount.enter(acct) {
		s.served.leave()
		return errAccountBusy
	}
	if !s.perTenant.enter(p.Tenant) {
		if bound {
			s.perAccount.leave(acct)
		}
		s.served.leave()
		return errTenantBusy
	}
	return nil
}

// dismiss gives back the places admit took.
func (s *Server) dismiss(p auth.Principal) {
	s.served.leave()
	s.perTenant.leave(p.Tenant)
	if acct, bound := accountOf(p); bound {
		s.perAccount.leave(acct)
	}
}

// allowRate spends one token of the tenant's bucket and, for an
// account-bound token, first one of its account's; when either is empty it
// returns the 429's refusal, with the wait for its Retry-After. A request its account's
// bucket refuses spends nothing of its tenant's, so that an account over
// its share takes nothing more from its tenant's other callers.
//
// Either way the answer states the tenant's limit and what is left of it,
// in the RateLimit-Policy and RateLimit fields of the IETF draft "RateLimit
// header fields for HTTP" (draft-ietf-httpapi-ratelimit-headers-10), chosen
// over the older X-RateLimit-* fields because their Reset means seconds in
// some APIs and a time in others, while the draft's are defined, in the
// same seconds as Retry-After. The account's share is not stated there:
// the contract's fields hold the tenant's quota alone, and clients
// generated from it check them; its 429 says "account" in its message.
func (s *Server) allowRate(w http.ResponseWriter, p auth.Principal) error {
	if s.limiter == nil {
		return nil
	}
	h := w.Header()
	h.Set("RateLimit-Policy", s.limiter.policy)
	if acct, bound := accountOf(p); bound && s.accountRate != nil {
		if ok, wait, _ := s.accountRate.take(acct); !ok {
			h.Set("RateLimit", s.limiter.field(s.limiter.peek(p.Tenant)))
			return retryLater{errAccountLimited, wait}
		}
	}
	ok, wait, left := s.limiter.take(p.Tenant)
	h.Set("RateLimit", s.limiter.field(left))
	if !ok {
		return retryLater{errRateLimited, wait}
	}
	return nil
}

// retryAfter is wait in whole seconds for Retry-After: rounded up, so that a
// client that waits that long finds a token, and at least 1, since 0 would
// invite an immediate retry.
func retryAfter(wait time.Duration) int {
	secs := int(math.Ceil(wait.Seconds()))
	return max(secs, 1)
}

// Bounds on the limiters' memory. A bucket that has been idle long enough
// to fill up again is the same as a new one, so sweeping it loses nothing.
// Accounts are as many as a tenant's customers, and any of them may come
// with a token: they are capped like tenants.
const (
	sweepEvery  = time.Minute
	maxTenants  = 1 << 16
	maxAccounts = 1 << 16
	maxWait     = 24 * time.Hour
)

// limiter is a token bucket per key (a tenant, an account): each holds up
// to burst tokens, refills at rate tokens a second, and a request spends one.
type limiter[K comparable] struct {
	name       string // the policy's, in the RateLimit fields
	rate       float64
	burst      float64
	now        func() time.Time
	sweepEvery time.Duration
	maxKeys    int

	mu        sync.Mutex
	buckets   map[K]*bucket
	nextSweep time.Time
	// policy is the RateLimit-Policy field: a quota of burst requests per
	// the seconds a bucket takes to refill from empty.
	policy string
}

// bucket is one key's tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns a limiter of rate requests a second per key with
// bursts of burst (at least 1), keeping at most maxKeys buckets; nil, which
// limits nothing, when rate is 0 or less. name names its policy.
func newLimiter[K comparable](name string, rate float64, burst, maxKeys int) *limiter[K] {
	if rate <= 0 {
		return nil
	}
	l := &limiter[K]{
		name:       name,
		rate:       rate,
		burst:      float64(max(burst, 1)),
		now:        time.Now,
		sweepEvery: sweepEvery,
		maxKeys:    maxKeys,
		buckets:    map[K]*bucket{},
	}
	l.policy = `"` + name + `";q=` + strconv.Itoa(int(l.burst)) + `;w=` + strconv.Itoa(l.secondsToFull(0))
	return l
}

// field is the RateLimit field of a bucket holding left.
func (l *limiter[K]) field(left float64) string {
	return `"` + l.name + `";r=` + strconv.Itoa(int(left)) + `;t=` + strconv.Itoa(l.secondsToFull(left))
}

// take spends a token of key's bucket and reports whether there was one;
// when there was not, it also returns how long until there is. left is what
// the bucket holds afterwards.
func (l *limiter[K]) take(key K) (ok bool, wait time.Duration, left float64) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !now.Before(l.nextSweep) {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			// More keys active at once than the cap: drop any one. At
			// worst that key starts again with a full bucket.
			for k := range l.buckets {
				delete(l.buckets, k)
				break
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
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

// peek is what key's bucket holds, spending nothing.
func (l *limiter[K]) peek(key K) float64 {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return l.burst
	}
	return l.tokensAt(b, now)
}

// secondsToFull is how long a bucket holding left takes to refill, in
// whole seconds rounded up, capped as Retry-After is.
func (l *limiter[K]) secondsToFull(left float64) int {
	return int(math.Ceil(math.Min((l.burst-left)/l.rate, maxWait.Seconds())))
}

// tokensAt is what b holds at now: refilled since b.last, up to burst.
func (l *limiter[K]) tokensAt(b *bucket, now time.Time) float64 {
	elapsed := now.Sub(b.last).Seconds()
	if elapsed <= 0 {
		return b.tokens
	}
	return math.Min(l.burst, b.tokens+elapsed*l.rate)
}

// sweep forgets the buckets that are full again.
func (l *limiter[K]) sweep(now time.Time) {
	for k, b := range l.buckets {
		if l.tokensAt(b, now) >= l.burst {
			delete(l.buckets, k)
		}
	}
	l.nextSweep = now.Add(l.sweepEvery)
}
