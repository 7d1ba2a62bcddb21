package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// limitedNumber tells the requests of a test apart.
func limitedNumber(i int) string { return fmt.Sprintf("11 9000-%04d", i) }

// limitedBody is a create of limitedNumber(i).
func limitedBody(i int) string {
	return fmt.Sprintf(`{"number": %q, "type": "MOBILE"}`, limitedNumber(i))
}

// eventNumbers are the phone numbers of the delivered events.
func eventNumbers(evs []map[string]any) []string {
	var out []string
	for _, e := range evs {
		data, _ := e["data"].(map[string]any)
		obj, _ := data["object"].(map[string]any)
		n, _ := obj["number"].(string)
		out = append(out, n)
	}
	return out
}

func TestRateLimitPerTenant(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, map[string]string{"PHONES_RATE_LIMIT": "5", "PHONES_RATE_BURST": "5"})

		// The bucket holds 5 and refills one every 200 ms; the requests
		// take far less, so the 6th finds it empty. On a machine slow enough
		// to refill in between, the 429 only comes a little later.
		passed, limited := 0, -1
		var r response
		for i := range 30 {
			if r = s.create(1, limitedBody(i)); r.status == http.StatusTooManyRequests {
				limited = i
				break
			}
			createdID(t, r)
			// The answer states the limit and what is left of it: 5 requests
			// per the second the empty bucket takes to refill.
			if got := r.header.Get("RateLimit-Policy"); got != `"tenant";q=5;w=1` {
				t.Errorf("create %d: RateLimit-Policy %q; want \"tenant\";q=5;w=1", i, got)
			}
			if got := r.header.Get("RateLimit"); !strings.HasPrefix(got, `"tenant";r=`) || !strings.HasSuffix(got, ";t=1") {
				t.Errorf("create %d: RateLimit %q; want \"tenant\";r=<left>;t=1", i, got)
			}
			passed++
		}
		if limited < 0 {
			t.Fatalf("30 requests at once, none answered 429; want the 6th limited at 5/s with a burst of 5")
		}
		if passed < 5 {
			t.Fatalf("429 after %d requests; want a burst of 5 to pass", passed)
		}
		if passed > 5 {
			t.Logf("the 429 came after %d requests: the bucket refilled between them", passed)
		}
		if got := r.header.Get("RateLimit"); got != `"tenant";r=0;t=1` {
			t.Errorf("the 429: RateLimit %q; want \"tenant\";r=0;t=1", got)
		}
		if string(r.body) != `{"message":"Too many requests for this tenant, retry later"}` {
			t.Errorf("429 body %s", r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("429 Content-Type %q; want application/json", ct)
		}
		// At 5/s a token is at most 200 ms away: rounded up to whole seconds, 1.
		retry, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || retry != 1 {
			t.Fatalf("Retry-After %q; want 1", r.header.Get("Retry-After"))
		}

		other := s.keys.token(t, claims{"tenant_id": "TN-test-2"})
		createdID(t, s.do(http.MethodPost, "/accounts/v1/accounts/1/phones", limitedBody(100), bearer(other), jsonCT))

		time.Sleep(time.Duration(retry) * time.Second)
		createdID(t, s.create(1, limitedBody(200)))

		// The 429 stored nothing and emitted nothing.
		list := s.do(http.MethodGet, "/accounts/v1/accounts/1/phones?limit=500", "", bearer(s.token))
		if list.status != http.StatusOK {
			t.Fatalf("list: status %d %s", list.status, list.body)
		}
		items, _ := list.json(t)["items"].([]any)
		if len(items) != passed+1 {
			t.Errorf("%d phones stored for the tenant; want %d: the 200s only", len(items), passed+1)
		}
		evs := s.delivered()
		numbers := eventNumbers(evs)
		if len(evs) != passed+2 {
			t.Errorf("%d events; want %d, one per 200", len(evs), passed+2)
		}
		for _, n := range numbers {
			if n == limitedNumber(limited) {
				t.Errorf("an event for the limited request's number %s", n)
			}
		}
	})
}

func TestOverloadSheds503(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, map[string]string{
			"PHONES_MAX_IN_FLIGHT":            "2",
			"PHONES_MAX_IN_FLIGHT_PER_TENANT": "2",
			// Long enough that the held creates stay in flight for the test
			// (on SQLite, the group commit's own 5s bounds them).
			"PHONES_STORAGE_TIMEOUT":      "30s",
			"PHONES_DB_STATEMENT_TIMEOUT": "30s",
		})
		release := lockDatabase(t, s)

		// Creates wait for the lock, so each is held in flight, or shed once
		// two are. Only creates are sent until the first 503: when it comes,
		// the two requests in flight are held creates.
		answers := make(chan response, 10)
		sent := 0
		var r response
		for r.status == 0 {
			if sent == cap(answers) {
				t.Fatalf("%d creates sent while the database is locked, none shed; want a 503 at PHONES_MAX_IN_FLIGHT=2", sent)
			}
			go func(i int) { answers <- s.create(1, limitedBody(i)) }(sent)
			sent++
			select {
			case r = <-answers:
				if r.status != http.StatusServiceUnavailable {
					t.Fatalf("a create answered %d %s while the database is locked; want it held or shed", r.status, r.body)
				}
			case <-time.After(100 * time.Millisecond): // held, or shed and seen later
			}
		}
		if string(r.body) != `{"message":"Service overloaded, retry later"}` || r.header.Get("Retry-After") != "1" {
			t.Errorf("shed: body %s Retry-After %q; want the overload message and Retry-After 1", r.body, r.header.Get("Retry-After"))
		}

		// With the cap reached, anything else on the API is shed at once;
		// a request without a good token is refused for its token, since
		// it never takes a place.
		began := time.Now()
		list := s.do(http.MethodGet, "/accounts/v1/accounts/1/phones", "", bearer(s.token))
		if took := time.Since(began); list.status != http.StatusServiceUnavailable || took > 2*time.Second {
			t.Errorf("list at the cap: status %d after %v; want 503 at once", list.status, took)
		}
		if r := s.do(http.MethodGet, "/accounts/v1/accounts/1/phones", ""); r.status != http.StatusUnauthorized {
			t.Errorf("no token at the cap: status %d; want 401", r.status)
		}
		for _, path := range []string{"/healthz", "/openapi.json"} {
			if r := s.do(http.MethodGet, path, ""); r.status != http.StatusOK {
				t.Errorf("%s at the cap: status %d; want 200, never shed", path, r.status)
			}
		}
		// /readyz is never shed either. It may still say not ready: SQLite's
		// writer, which it pings, is the connection stuck behind the lock.
		if r := s.do(http.MethodGet, "/readyz", ""); r.json(t)["checks"] == nil {
			t.Errorf("/readyz at the cap: status %d %s; want its readiness report, never shed", r.status, r.body)
		}

		release()
		statuses := map[int]int{}
		for range sent - 1 {
			statuses[(<-answers).status]++
		}
		if statuses[http.StatusOK] != 2 || statuses[http.StatusOK]+statuses[http.StatusServiceUnavailable] != sent-1 {
			t.Fatalf("the other creates answered %v; want the two held ones 200, any more 503", statuses)
		}
		createdID(t, s.create(1, limitedBody(99)))
		evs := s.events(3)
		if got := eventNumbers(evs); len(got) != 3 || got[2] != limitedNumber(99) {
			t.Errorf("event numbers %v; want the two held creates' then %s: none for the shed ones", got, limitedNumber(99))
		}
	})
}

func TestBackPressureConfig(t *testing.T) {
	prod := map[string]string{
		"PHONES_JWKS_URL":     "https://keys.example/jwks",
		"PHONES_JWT_ISSUER":   "i",
		"PHONES_JWT_AUDIENCE": "a",
	}
	for _, c := range []struct {
		name        string
		prod        bool
		env         map[string]string
		rate        float64
		burst       int32
		maxInFlight int32
		err         string // the variable the error names
	}{
		{name: "development mode: no rate limit", rate: 0, burst: 1, maxInFlight: 512},
		{name: "production defaults", prod: true, rate: 1000, burst: 2000, maxInFlight: 512},
		{name: "production, off", prod: true, env: map[string]string{"PHONES_RATE_LIMIT": "0"}, rate: 0, burst: 1, maxInFlight: 512},
		{name: "burst defaults to two seconds", env: map[string]string{"PHONES_RATE_LIMIT": "5"}, rate: 5, burst: 10, maxInFlight: 512},
		{name: "fractional rate", prod: true, env: map[string]string{"PHONES_RATE_LIMIT": "0.5", "PHONES_RATE_BURST": "3", "PHONES_MAX_IN_FLIGHT": "64"}, rate: 0.5, burst: 3, maxInFlight: 64},
		{name: "negative rate", env: map[string]string{"PHONES_RATE_LIMIT": "-1"}, err: "PHONES_RATE_LIMIT"},
		{name: "rate not a number", env: map[string]string{"PHONES_RATE_LIMIT": "fast"}, err: "PHONES_RATE_LIMIT"},
		{name: "burst without a rate", env: map[string]string{"PHONES_RATE_BURST": "10"}, err: "PHONES_RATE_BURST"},
		{name: "zero burst", prod: true, env: map[string]string{"PHONES_RATE_BURST": "0"}, err: "PHONES_RATE_BURST"},
		{name: "no cap on requests in flight", env: map[string]string{"PHONES_MAX_IN_FLIGHT": "0"}, err: "PHONES_MAX_IN_FLIGHT"},
		{name: "cap above the group-commit queue", env: map[string]string{"PHONES_MAX_IN_FLIGHT": "4097"}, err: "PHONES_MAX_IN_FLIGHT"},
		{name: "no account share", env: map[string]string{"PHONES_ACCOUNT_SHARE": "0"}, err: "PHONES_ACCOUNT_SHARE"},
		{name: "account share above the whole", env: map[string]string{"PHONES_ACCOUNT_SHARE": "1.5"}, err: "PHONES_ACCOUNT_SHARE"},
		{name: "account share as a percentage", env: map[string]string{"PHONES_ACCOUNT_SHARE": "25%"}, err: "PHONES_ACCOUNT_SHARE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"PHONES_DATA_DIR": t.TempDir()}
			if c.prod {
				for k, v := range prod {
					env[k] = v
				}
			}
			for k, v := range c.env {
				env[k] = v
			}
			cfg, err := loadConfig(func(k string) string { return env[k] })
			if c.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), c.err) {
					t.Fatalf("loadConfig: %v; want an error naming %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.rateLimit != c.rate || cfg.rateBurst != c.burst || cfg.maxInFlight != c.maxInFlight {
				t.Errorf("rate %v burst %d max in flight %d; want %v, %d, %d", cfg.rateLimit, cfg.rateBurst, cfg.maxInFlight, c.rate, c.burst, c.maxInFlight)
			}
		})
	}
}

// TestAccountShare: an account-bound token, one customer's app, takes at
// most its account's share of its tenant's rate and places (a quarter by
// default): after its burst, and beside its slow bodies, the tenant-wide
// token of the same tenant is still served. The guards stand before
// storage, so one backend shows them.
func TestAccountShare(t *testing.T) {
	t.Run("rate", func(t *testing.T) {
		// A slow refill (0.5/s, 0.125/s for an account), so that what the
		// test sees is the burst: the tenant's 8, an account's quarter, 2.
		s := start(t, map[string]string{"PHONES_RATE_LIMIT": "0.5", "PHONES_RATE_BURST": "8"})
		customer := s.keys.token(t, claims{"account_id": 1})
		statuses := map[int]int{}
		var last response
		for i := range 20 {
			last = s.do(http.MethodPost, "/accounts/v1/accounts/1/phones", limitedBody(i), bearer(customer), jsonCT)
			statuses[last.status]++
		}
		if statuses[http.StatusOK] != 2 || statuses[http.StatusTooManyRequests] != 18 {
			t.Errorf("20 creates of one account-bound token answered %v; want its share of the burst, 2, then 429s", statuses)
		}
		if string(last.body) != `{"message":"Too many requests for this account, retry later"}` {
			t.Errorf("the account's 429: body %s; want the account's message", last.body)
		}
		// An account's bucket refills at 0.125/s: a token is 8 s away.
		if got := last.header.Get("Retry-After"); got != "8" {
			t.Errorf("the account's 429: Retry-After %q; want 8", got)
		}
		// Its refusals spent nothing of the tenant's bucket, which it states.
		if got := last.header.Get("RateLimit"); got != `"tenant";r=6;t=4` {
			t.Errorf("the account's 429: RateLimit %q; want \"tenant\";r=6;t=4, the tenant's 8 less the account's 2", got)
		}
		// Another account has a share of its own; the bank's tenant-wide
		// token has the rest of the tenant's burst.
		other := s.keys.token(t, claims{"uid": "2"})
		createdID(t, s.do(http.MethodPost, "/accounts/v1/accounts/2/phones", limitedBody(50), bearer(other), jsonCT))
		for i := range 5 {
			createdID(t, s.create(1, limitedBody(100+i)))
		}
	})

	t.Run("in flight", func(t *testing.T) {
		// A tenant's 4 places, an account's quarter of them, 1; bodies
		// held for longer than the test takes.
		s := start(t, map[string]string{"PHONES_MAX_IN_FLIGHT_PER_TENANT": "4", "PHONES_BODY_TIMEOUT": "10s"})
		customer := s.keys.token(t, claims{"account_id": 1})
		for range 4 {
			sendSlow(t, s, customer)
		}
		// One slow body holds the account's one place; the three others
		// are refused at once. (Their 429s reach the client only once
		// their bodies have arrived or timed out, as for any request
		// refused before its body is read: the metric sees them first.)
		waitRefusals(t, s, "tenant_busy", 3)
		// The tenant's other places are its other callers'.
		for i := range 3 {
			createdID(t, s.create(1, limitedBody(i)))
		}
	})
}

// waitRefusals waits until /metrics counts n refusals for reason.
func waitRefusals(t *testing.T, s *phonesd, reason string, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, families := scrape(t, s.base+"/metrics")
		got := counter(families, "phonesd_http_refusals_total", map[string]string{"reason": reason})
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Errorf("%v refusals for %s; want %v", got, reason, n)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
