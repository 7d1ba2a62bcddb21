package httpapi

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeClock is a limiter's time, moved by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// testLimiter returns a limiter on a fake clock, which stands still until
// advanced.
func testLimiter(rate float64, burst int) (*limiter, *fakeClock) {
	l, c := newLimiter(rate, burst), &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l.now = c.now
	return l, c
}

func TestLimiterBurstThenRefill(t *testing.T) {
	l, clock := testLimiter(2, 3)
	l.sweepEvery = 24 * time.Hour // the bucket itself must cap its tokens
	for i := range 3 {
		if ok, _ := l.take("TN-1"); !ok {
			t.Fatalf("request %d of the burst refused; want a burst of 3", i+1)
		}
	}
	ok, wait := l.take("TN-1")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th request: ok %v, wait %v; want refused, 500ms until the next token at 2/s", ok, wait)
	}
	clock.advance(375 * time.Millisecond)
	if ok, _ := l.take("TN-1"); ok {
		t.Fatalf("allowed 375ms later; want refused until 500ms")
	}
	clock.advance(125 * time.Millisecond)
	if ok, _ := l.take("TN-1"); !ok {
		t.Fatalf("refused 500ms later; want one token refilled")
	}
	// A long idle time refills the bucket only up to the burst.
	clock.advance(time.Hour)
	for i := range 3 {
		if ok, _ := l.take("TN-1"); !ok {
			t.Fatalf("after an hour: request %d refused; want a full burst", i+1)
		}
	}
	if ok, _ := l.take("TN-1"); ok {
		t.Fatalf("after an hour: 4th request allowed; want the bucket capped at the burst")
	}
}

func TestLimiterIsolatesTenants(t *testing.T) {
	l, _ := testLimiter(1, 2)
	l.take("TN-1")
	l.take("TN-1")
	if ok, _ := l.take("TN-1"); ok {
		t.Fatalf("TN-1: 3rd request allowed; want refused")
	}
	for i := range 2 {
		if ok, _ := l.take("TN-2"); !ok {
			t.Fatalf("TN-2: request %d refused while TN-1 is limited; want its own bucket", i+1)
		}
	}
}

func TestLimiterForgetsIdleTenants(t *testing.T) {
	l, clock := testLimiter(0.1, 2) // a bucket fills up in 20s
	l.sweepEvery = 10 * time.Second
	l.take("TN-busy")
	l.take("TN-busy") // empty
	l.take("TN-idle") // one of two tokens left
	clock.advance(10 * time.Second)
	l.take("TN-new") // sweeps: TN-idle is full again, TN-busy is not
	got := map[string]bool{}
	for tenant := range l.buckets {
		got[tenant] = true
	}
	if len(got) != 2 || !got["TN-busy"] || !got["TN-new"] {
		t.Fatalf("buckets after the sweep: %v; want TN-busy and TN-new (TN-idle was full)", got)
	}
	// TN-busy kept its state: one token refilled, not a fresh burst.
	if ok, _ := l.take("TN-busy"); !ok {
		t.Fatalf("TN-busy: refused after 10s at 0.1/s; want one token")
	}
	if ok, _ := l.take("TN-busy"); ok {
		t.Fatalf("TN-busy: allowed a 2nd request; want its bucket kept through the sweep")
	}
}

func TestLimiterCapsTenants(t *testing.T) {
	l, _ := testLimiter(1, 1)
	l.maxTenants = 3
	for _, tenant := range []string{"TN-1", "TN-2", "TN-3", "TN-4", "TN-5"} {
		if ok, _ := l.take(tenant); !ok {
			t.Fatalf("%s: first request refused", tenant)
		}
		if len(l.buckets) > 3 {
			t.Fatalf("%d buckets; want at most 3", len(l.buckets))
		}
	}
	if _, ok := l.buckets["TN-5"]; !ok {
		t.Errorf("the newest tenant has no bucket")
	}
}

func TestRetryAfter(t *testing.T) {
	for _, c := range []struct {
		wait time.Duration
		want int
	}{
		{0, 1},
		{time.Nanosecond, 1},
		{200 * time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Millisecond, 2},
		{2500 * time.Millisecond, 3},
	} {
		if got := retryAfter(c.wait); got != c.want {
			t.Errorf("retryAfter(%v) = %d; want %d", c.wait, got, c.want)
		}
	}
}

// TestRateLimitAnswers429 checks where the limit sits among the contract's
// checks: after the token, before everything else.
func TestRateLimitAnswers429(t *testing.T) {
	s := newTestServer(t)
	l, _ := testLimiter(0.25, 1) // frozen clock: nothing refills
	s.limiter = l
	body := []byte(`{"number": "1", "type": "MOBILE"}`)
	if rec := s.post("/accounts/v1/accounts/1/phones", nil, body); rec.Code != http.StatusOK {
		t.Fatalf("first request: status %d %s; want 200", rec.Code, rec.Body)
	}
	rec := s.post("/accounts/v1/accounts/1/phones", nil, []byte(`{"number": "2", "type": "MOBILE"}`))
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("second request: status %d %s; want 429", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Retry-After"); got != "4" {
		t.Errorf("Retry-After %q; want 4, a token's time at 0.25/s", got)
	}
	if got := rec.Body.String(); got != `{"message":"Too many requests for this tenant, retry later"}` {
		t.Errorf("body %s", got)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q; want application/json", got)
	}
	// Before the path's checks: a bad accountId is not even looked at.
	if rec := s.post("/accounts/v1/accounts/0/phones", nil, body); rec.Code != http.StatusTooManyRequests {
		t.Errorf("bad accountId while limited: status %d; want 429", rec.Code)
	}
	// After the token's: an unknown caller is not a tenant to limit.
	req := httptest.NewRequest(http.MethodPost, "/accounts/v1/accounts/1/phones", nil)
	unauth := httptest.NewRecorder()
	s.ServeHTTP(unauth, req)
	if unauth.Code != http.StatusUnauthorized {
		t.Errorf("no token while the tenant is limited: status %d; want 401", unauth.Code)
	}
}

func TestShedAnswers503BeyondTheCap(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s := &Server{shedder: newShedder(2)}
	h := s.shed(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusOK)
	}))
	serve := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/accounts/v1/accounts/1/phones", nil))
		return rec
	}
	var wg sync.WaitGroup
	held := make([]*httptest.ResponseRecorder, 2)
	for i := range held {
		wg.Add(1)
		go func() { defer wg.Done(); held[i] = serve() }()
		<-entered
	}
	third := make(chan *httptest.ResponseRecorder, 1)
	go func() { third <- serve() }()
	var rec *httptest.ResponseRecorder
	select {
	case rec = <-third:
	case <-entered:
		close(release)
		t.Fatalf("third request reached the handler; want it shed at the cap of 2")
	}
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("third request: status %d Retry-After %q; want 503 with Retry-After 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	if got := rec.Body.String(); got != `{"message":"Service overloaded, retry later"}` {
		t.Errorf("body %s", got)
	}
	close(release)
	wg.Wait()
	for i, r := range held {
		if r.Code != http.StatusOK {
			t.Errorf("held request %d: status %d; want 200", i+1, r.Code)
		}
	}
	go func() { <-entered }()
	if rec := serve(); rec.Code != http.StatusOK {
		t.Errorf("after the held requests ended: status %d; want 200", rec.Code)
	}
	if n := s.shedder.inFlight.Load(); n != 0 {
		t.Errorf("%d requests counted in flight after all ended; want 0", n)
	}
}
