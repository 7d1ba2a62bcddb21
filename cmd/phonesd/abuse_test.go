package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// slowRequest is a create sent on a connection of its own that stops after
// the first byte of its body, as a client trickling its body in would.
type slowRequest struct {
	conn net.Conn
}

// sendSlow writes a create's headers and the first byte of its 40-byte body.
func sendSlow(t *testing.T, s *phonesd, token string) slowRequest {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "POST /accounts/v1/accounts/1/phones HTTP/1.1\r\nHost: phonesd\r\nAuthorization: Bearer " + token +
		"\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return slowRequest{conn: conn}
}

// status reads the answer's status, waiting up to wait for it.
func (r slowRequest) status(wait time.Duration) (int, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(r.conn), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// latencies times creates sent one after another with token, each with a
// number of its own, and returns their durations; every answer must be 200.
func latencies(t *testing.T, s *phonesd, token string, n int, first int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, 0, n)
	for i := range n {
		body := fmt.Sprintf(`{"number": "7%07d", "type": "MOBILE"}`, first+i)
		began := time.Now()
		r := s.do(http.MethodPost, "/accounts/v1/accounts/2/phones", body, bearer(token), jsonCT)
		out = append(out, time.Since(began))
		if r.status != http.StatusOK {
			t.Fatalf("create %d of the other tenant: status %d %s; want 200", i, r.status, r.body)
		}
	}
	return out
}

func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// TestSlowBodiesHoldOnlyTheirTenant: one tenant opens 600 connections that
// send their headers and the first byte of a body, well inside its rate
// limit, and stop. It holds at most its own share of the replica: the rest
// of its requests answer 429 at once, the held ones 408 when the body
// timeout passes, and meanwhile another tenant's creates all answer 200,
// fast.
func TestSlowBodiesHoldOnlyTheirTenant(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, map[string]string{"PHONES_BODY_TIMEOUT": "3s"})
		slowTenant := s.keys.token(t, claims{"tenant_id": "TN-slow"})
		other := s.keys.token(t, claims{"tenant_id": "TN-other"})
		quiet := p99(latencies(t, s, other, 100, 0))

		const slow = 600
		// PHONES_MAX_IN_FLIGHT_PER_TENANT is a quarter of 512 by default.
		const share = 128
		began := time.Now()
		reqs := make([]slowRequest, slow)
		for i := range reqs {
			reqs[i] = sendSlow(t, s, slowTenant)
		}
		// The slow tenant holds all it may once phonesd has refused the
		// rest: the other tenant's creates are timed from then on, not
		// beside the arrival of 600 connections.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			_, m := scrape(t, s.base+"/metrics")
			if n := counter(m, "phonesd_http_refusals_total", map[string]string{"reason": "tenant_busy"}); n >= slow-share {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("%v of the slow tenant's requests refused after 10s; want %d, all beyond its share", n, slow-share)
			}
		}
		loaded := latencies(t, s, other, 200, 1000)
		if time.Since(began) > 3*time.Second {
			t.Logf("the other tenant's creates ended %v after the slow requests began, after the body timeout", time.Since(began))
		}

		statuses := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, r := range reqs {
			wg.Go(func() {
				code, err := r.status(10 * time.Second)
				if err != nil {
					t.Errorf("a slow request got no answer: %v", err)
					return
				}
				mu.Lock()
				statuses[code]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if statuses[http.StatusRequestTimeout] != share || statuses[http.StatusTooManyRequests] != slow-share {
			t.Errorf("the slow tenant's requests answered %v; want %d 408s (its share, held until the body timeout) and %d 429s", statuses, share, slow-share)
		}
		// Alone again, before and after: the machine's noise comes and goes.
		quiet = max(quiet, p99(latencies(t, s, other, 100, 2000)))
		t.Logf("the other tenant's creates: p99 %v alone, %v beside 600 slow bodies", quiet, p99(loaded))
		// 50 ms is the promise; a machine too busy to keep it alone (the
		// race detector, other packages' tests) is judged against itself.
		if got := p99(loaded); got > 50*time.Millisecond && got > 2*quiet {
			t.Errorf("the other tenant's creates: p99 %v beside the slow bodies (%v alone); want under 50 ms", got, quiet)
		}
		// Everything the slow tenant held is free again.
		createdID(t, s.do(http.MethodPost, "/accounts/v1/accounts/1/phones", `{"number": "1", "type": "MOBILE"}`, bearer(slowTenant), jsonCT))
	})
}

// TestJunkTokensWhileKeyServerIsSlow: tokens with random key ids make
// phonesd refetch the key set, which answers only after 4 s. Each junk
// request is refused at once instead of waiting for the refetch, and a
// valid client beside them is served throughout.
func TestJunkTokensWhileKeyServerIsSlow(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		keys := newTestKeys(t)
		var fetches atomic.Int64
		jwks := keys.servedBehind(t, func() bool {
			if fetches.Add(1) > 1 {
				time.Sleep(4 * time.Second) // every refetch after the first load
			}
			return true
		})
		s := b.start(t, map[string]string{"PHONES_JWKS_URL": jwks})
		s.token = keys.token(t, nil)
		// An unknown kid refetches the set at most every 5 s, counted from
		// the first load: past that, the junk below makes it refetch.
		time.Sleep(5 * time.Second)

		junkKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		junk := func(i int) string {
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: junkKey},
				(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", fmt.Sprintf("junk-%d-%d", i, time.Now().UnixNano())))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Signed(signer).Claims(map[string]any(keys.baseClaims())).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}

		// 100 junk tokens a second for 3 s, beside a valid client.
		stop := make(chan struct{})
		var junkSent, junkSlow atomic.Int64
		var wg sync.WaitGroup
		for g := range 10 {
			wg.Go(func() {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					began := time.Now()
					req, _ := http.NewRequest(http.MethodPost, s.base+"/accounts/v1/accounts/1/phones", strings.NewReader(okBody))
					req.Header.Set("Authorization", "Bearer "+junk(g*1000+i))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Errorf("a junk token: %v", err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusUnauthorized || string(body) != `{"message":"unknown token signing key"}` {
						t.Errorf("a junk token: status %d %s; want 401 unknown token signing key", resp.StatusCode, body)
					}
					if time.Since(began) > time.Second {
						junkSlow.Add(1)
					}
					junkSent.Add(1)
				}
			})
		}
		var served int
		deadline := time.Now().Add(3 * time.Second)
		for i := 0; time.Now().Before(deadline); i++ {
			createdID(t, s.create(1, fmt.Sprintf(`{"number": "8%07d", "type": "MOBILE"}`, i)))
			served++
			time.Sleep(20 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		// About 300 on a quiet machine; enough to have reached the refetch
		// on a busy one.
		if junkSent.Load() < 30 {
			t.Errorf("%d junk requests sent in 3 s; want about 300", junkSent.Load())
		}
		if n := junkSlow.Load(); n > 0 {
			t.Errorf("%d junk requests took over a second; want each refused at once, not held by the refetch", n)
		}
		if n := fetches.Load(); n < 2 || n > 3 {
			t.Errorf("%d fetches of the key set; want the first and one slow refetch, at most one every 5 s", n)
		}
		t.Logf("%d junk requests refused, %d valid creates served, %d key set fetches", junkSent.Load(), served, fetches.Load())
	})
}

// TestBodyTimeout: a body that has not arrived PHONES_BODY_TIMEOUT after
// the headers answers 408, and the connection is closed.
func TestBodyTimeout(t *testing.T) {
	s := start(t, map[string]string{"PHONES_BODY_TIMEOUT": "300ms"})
	r := sendSlow(t, s, s.token)
	began := time.Now()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(r.conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a body cut short: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || string(body) != `{"message":"Request body not received in time"}` || !resp.Close {
		t.Errorf("status %d %s, close %v; want 408 with the contract's body, closing the connection", resp.StatusCode, body, resp.Close)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("answered after %v; want about the 300ms body timeout", took)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("read after the 408: %v; want EOF, the connection closed", err)
	}
	// A body that arrives in time is served, even when it comes in pieces.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body2 := `{"number": "5", "type": "MOBILE"}`
	fmt.Fprintf(conn, "POST /accounts/v1/accounts/1/phones HTTP/1.1\r\nHost: phonesd\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", s.token, len(body2), body2[:5])
	// A pause, not a wait for anything: it makes the body arrive in two
	// reads. It is short so that a busy machine's delays, added to it,
	// stay far inside the 300ms timeout the answer must beat.
	time.Sleep(20 * time.Millisecond)
	io.WriteString(conn, body2[5:])
	ok := slowRequest{conn: conn}
	if code, err := ok.status(5 * time.Second); err != nil || code != http.StatusOK {
		t.Errorf("a body sent in two pieces within the timeout: status %d, %v; want 200", code, err)
	}
}

// TestBadSignaturesSpareCachedTokens: with PHONES_MAX_IN_FLIGHT=1, tokens
// with bad signatures from 16 clients at once keep the one place for
// tokens being verified nearly always taken. A good client's token,
// verified once and cached, is recognised before that place is asked for:
// every one of its requests is served, none shed 503.
func TestBadSignaturesSpareCachedTokens(t *testing.T) {
	s := start(t, map[string]string{"PHONES_MAX_IN_FLIGHT": "1"})
	list := func(token string) response {
		return s.do(http.MethodGet, "/accounts/v1/accounts/1/phones?limit=1", "", bearer(token))
	}
	if r := list(s.token); r.status != http.StatusOK { // verified, and cached
		t.Fatalf("the good token: status %d %s; want 200", r.status, r.body)
	}
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// Signed with another key under the key set's kid: refused only once
	// its signature has been checked, the costliest refusal.
	bad := (&testKeys{key: forger, kid: s.keys.kid}).token(t, nil)

	flood := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(flood.CloseIdleConnections)
	stop := make(chan struct{})
	var refused, shed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, s.base+"/accounts/v1/accounts/1/phones", nil)
				req.Header.Set("Authorization", "Bearer "+bad)
				resp, err := flood.Do(req)
				if err != nil {
					t.Errorf("a bad signature: %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusUnauthorized:
					refused.Add(1)
				case http.StatusServiceUnavailable:
					shed.Add(1)
				default:
					t.Errorf("a bad signature: status %d; want 401, or 503 beyond the place", resp.StatusCode)
				}
			}
		})
	}
	statuses := map[int]int{}
	for range 300 {
		statuses[list(s.token).status]++
	}
	close(stop)
	wg.Wait()
	t.Logf("bad signatures: %d refused 401, %d shed 503; the good token's 300 requests: %v", refused.Load(), shed.Load(), statuses)
	// The flood must have filled the place, or the test shows nothing.
	if shed.Load() == 0 {
		t.Errorf("no bad signature shed 503: the flood never filled the place of tokens being verified")
	}
	if statuses[http.StatusOK] != 300 {
		t.Errorf("the good cached token's 300 requests beside the flood answered %v; want all 200", statuses)
	}
}
