package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
)

// fakeClock is a limiter's time, moved by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// testLimiter returns a limiter on a fake clock, which stands still until
// advanced.
func testLimiter(rate float64, burst int) (*limiter[string], *fakeClock) {
	l, c := newLimiter[string]("tenant", rate, burst, maxTenants), &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l.now = c.now
	return l, c
}

func TestLimiterBurstThenRefill(t *testing.T) {
	l, clock := testLimiter(2, 3)
	l.sweepEvery = 24 * time.Hour // the bucket itself must cap its tokens
	for i := range 3 {
		if ok, _, _ := l.take("TN-1"); !ok {
			t.Fatalf("request %d of the burst refused; want a burst of 3", i+1)
		}
	}
	ok, wait, _ := l.take("TN-1")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th request: ok %v, wait %v; want refused, 500ms until the next token at 2/s", ok, wait)
	}
	clock.advance(375 * time.Millisecond)
	if ok, _, _ := l.take("TN-1"); ok {
		t.Fatalf("allowed 375ms later; want refused until 500ms")
	}
	clock.advance(125 * time.Millisecond)
	if ok, _, _ := l.take("TN-1"); !ok {
		t.Fatalf("refused 500ms later; want one token refilled")
	}
	// A long idle time refills the bucket only up to the burst.
	clock.advance(time.Hour)
	for i := range 3 {
		if ok, _, _ := l.take("TN-1"); !ok {
			t.Fatalf("after an hour: request %d refused; want a full burst", i+1)
		}
	}
	if ok, _, _ := l.take("TN-1"); ok {
		t.Fatalf("after an hour: 4th request allowed; want the bucket capped at the burst")
	}
}

func TestLimiterIsolatesTenants(t *testing.T) {
	l, _ := testLimiter(1, 2)
	l.take("TN-1")
	l.take("TN-1")
	if ok, _, _ := l.take("TN-1"); ok {
		t.Fatalf("TN-1: 3rd request allowed; want refused")
	}
	for i := range 2 {
		if ok, _, _ := l.take("TN-2"); !ok {
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
	if ok, _, _ := l.take("TN-busy"); !ok {
		t.Fatalf("TN-busy: refused after 10s at 0.1/s; want one token")
	}
	if ok, _, _ := l.take("TN-busy"); ok {
		t.Fatalf("TN-busy: allowed a 2nd request; want its bucket kept through the sweep")
	}
}

func TestLimiterCapsTenants(t *testing.T) {
	l, _ := testLimiter(1, 1)
	l.maxKeys = 3
	for _, tenant := range []string{"TN-1", "TN-2", "TN-3", "TN-4", "TN-5"} {
		if ok, _, _ := l.take(tenant); !ok {
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
	// Every answer once the token is verified states the limit and what is
	// left of it: a bucket of 1 refilled at 0.25/s takes 4 s to refill.
	rateFields := func(name string, rec *httptest.ResponseRecorder, wantLeft string) {
		t.Helper()
		if got := rec.Header().Get("RateLimit-Policy"); got != `"tenant";q=1;w=4` {
			t.Errorf("%s: RateLimit-Policy %q; want \"tenant\";q=1;w=4", name, got)
		}
		if got := rec.Header().Get("RateLimit"); got != wantLeft {
			t.Errorf("%s: RateLimit %q; want %s", name, got, wantLeft)
		}
	}
	first := s.post("/accounts/v1/accounts/1/phones", nil, body)
	if first.Code != http.StatusOK {
		t.Fatalf("first request: status %d %s; want 200", first.Code, first.Body)
	}
	rateFields("the 200", first, `"tenant";r=0;t=4`)
	rec := s.post("/accounts/v1/accounts/1/phones", nil, []byte(`{"number": "2", "type": "MOBILE"}`))
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("second request: status %d %s; want 429", rec.Code, rec.Body)
	}
	rateFields("the 429", rec, `"tenant";r=0;t=4`)
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
	if got := unauth.Header().Get("RateLimit"); got != "" {
		t.Errorf("a 401 says RateLimit %q; want none, no tenant is known", got)
	}
}

// TestAdmission holds requests in progress with bodies that have not
// arrived yet and checks the bounds: a tenant over its own share gets 429,
// a request over the replica's 503, and a request with a bad token is
// refused for its token, not for places good tokens hold.
func TestAdmission(t *testing.T) {
	srv, key := newHandlerWith(t, func(c *Config) {
		c.MaxInFlight = 2
		c.MaxInFlightPerTenant = 1
	})
	tokenA := mint(t, key, auth.Claims{Tenant: "TN-A"})
	tokenB := mint(t, key, auth.Claims{Tenant: "TN-B"})
	tokenC := mint(t, key, auth.Claims{Tenant: "TN-C"})

	// held sends a create whose body is written only when release is closed.
	type held struct {
		body *io.PipeWriter
		done chan *httptest.ResponseRecorder
	}
	hold := func(token, number string) held {
		pr, pw := io.Pipe()
		h := held{body: pw, done: make(chan *httptest.ResponseRecorder, 1)}
		req := httptest.NewRequest(http.MethodPost, "/accounts/v1/accounts/1/phones", pr)
		req.Header.Set("Authorization", "Bearer "+token)
		go func() {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			h.done <- rec
		}()
		// The request holds its places once it waits for its body.
		if _, err := pw.Write([]byte(`{"number": "` + number + `",`)); err != nil {
			t.Fatal(err)
		}
		return h
	}
	finish := func(h held) *httptest.ResponseRecorder {
		_, _ = h.body.Write([]byte(` "type": "MOBILE"}`))
		_ = h.body.Close()
		return <-h.done
	}
	send := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/accounts/v1/accounts/1/phones", strings.NewReader(`{"number": "9", "type": "MOBILE"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}

	a := hold(tokenA, "1")
	if rec := send(tokenA); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" ||
		rec.Body.String() != `{"message":"Too many requests in progress for this tenant, retry later"}` {
		t.Errorf("tenant A beyond its share: status %d Retry-After %q %s; want 429 with Retry-After 1", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	b := hold(tokenB, "2")
	if rec := send(tokenC); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
		rec.Body.String() != `{"message":"Service overloaded, retry later"}` {
		t.Errorf("tenant C beyond the replica's places: status %d Retry-After %q %s; want 503 with Retry-After 1", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if rec := send("x.y.z"); rec.Code != http.StatusUnauthorized {
		t.Errorf("bad token while the places are taken: status %d %s; want 401", rec.Code, rec.Body)
	}
	for name, h := range map[string]held{"A": a, "B": b} {
		if rec := finish(h); rec.Code != http.StatusOK {
			t.Errorf("held create of tenant %s: status %d %s; want 200", name, rec.Code, rec.Body)
		}
	}
	if rec := send(tokenC); rec.Code != http.StatusOK {
		t.Errorf("tenant C once the places are free: status %d %s; want 200", rec.Code, rec.Body)
	}
	if n := srv.served.n.Load(); n != 0 {
		t.Errorf("%d requests counted in progress after all ended; want 0", n)
	}
	if n := len(srv.perTenant.n); n != 0 {
		t.Errorf("%d tenants counted in progress after all ended; want 0", n)
	}
}

func TestGaugeBounds(t *testing.T) {
	g := newGauge(2)
	if !g.enter() || !g.enter() {
		t.Fatal("two places of two: refused")
	}
	if g.enter() {
		t.Fatal("a third place of two: taken")
	}
	g.leave()
	if !g.enter() {
		t.Fatal("a place given back: not taken again")
	}
	var none *gauge // no bound
	for range 10 {
		if !none.enter() {
			t.Fatal("a nil gauge refused")
		}
	}
}

// TestAccountShares checks what an account's share of its tenant's comes
// to, and that a share of 0 or 1 leaves an account its tenant's whole.
func TestAccountShares(t *testing.T) {
	for _, c := range []struct {
		n     int
		share float64
		want  int
	}{
		{2000, 0.25, 500},
		{128, 0.25, 32},
		{7, 0.25, 1},
		{1, 0.25, 1},
		{0, 0.25, 0},
		{10, 0.01, 1},
	} {
		if got := shareOf(c.n, c.share); got != c.want {
			t.Errorf("shareOf(%d, %v) = %d; want %d", c.n, c.share, got, c.want)
		}
	}
	srv, _ := newHandlerWith(t, func(c *Config) {
		c.RateLimit, c.RateBurst, c.MaxInFlightPerTenant, c.AccountShare = 1000, 2000, 128, 0.25
	})
	if l := srv.accountRate; l == nil || l.rate != 250 || l.burst != 500 || l.maxKeys != maxAccounts {
		t.Errorf("an account's rate: %+v; want 250/s in bursts of 500, at most %d accounts kept", l, maxAccounts)
	}
	if g := srv.perAccount; g == nil || g.max != 32 {
		t.Errorf("an account's places: %+v; want 32", g)
	}
	for _, share := range []float64{0, 1} {
		srv, _ := newHandlerWith(t, func(c *Config) {
			c.RateLimit, c.MaxInFlightPerTenant, c.AccountShare = 1000, 128, share
		})
		if srv.accountRate != nil || srv.perAccount != nil {
			t.Errorf("AccountShare %v: an account has a share of its own; want its tenant's whole", share)
		}
	}
	for _, share := range []float64{-0.5, 1.5} {
		if _, err := NewServer(Config{StorageTimeout: time.Second, IdempotencyTTL: time.Hour, AccountShare: share}); err == nil {
			t.Errorf("AccountShare %v accepted; want an error", share)
		}
	}
}
