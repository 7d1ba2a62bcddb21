package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/testkit/idp"
	"github.com/phonesd/phonesd/internal/testkit/latency"
)

// Two abuses that once let one client take the service from everyone:
// a tenant holding many requests whose bodies never come, and tokens with
// invented key ids sent while the identity provider answers slowly. Beside
// each, a normal client of other tenants must be served as usual.

// slowBodyConns is how many requests with a trickling body the abusive
// tenant keeps open at once, beyond its share of the replica (a quarter
// of PHONES_MAX_IN_FLIGHT, 512, by default).
const slowBodyConns = 600

// slowBodyLimit is how long phonesd may hold a request whose body never
// comes: PHONES_BODY_TIMEOUT is 5 s, plus scheduling on a busy box.
const slowBodyLimit = 10 * time.Second

// driveSlowBodies runs the normal client alone, then beside the hostile
// tenant's connections that send their headers and the first byte of a
// body and stop, each opened again as soon as phonesd answers it.
func driveSlowBodies(ctx context.Context, s *trial) error {
	return s.besideNormalClient(ctx, "slow bodies", func(addr string, stop <-chan struct{}) []*hostileStat {
		st := newStat("requests whose body stops after a byte", "requests", http.StatusRequestTimeout, http.StatusTooManyRequests)
		token := s.c.tokens[tokenKey{hostileTenant, 0}]
		var wg sync.WaitGroup
		for range slowBodyConns {
			wg.Go(func() {
				loop(stop, 0, func(int) { slowBody(addr, token, st) })
			})
		}
		wg.Wait()
		if st.maxHold > slowBodyLimit {
			st.unexpected = append(st.unexpected, fmt.Sprintf("a request whose body never came was held %.1fs; want it answered within %s", st.maxHold.Seconds(), slowBodyLimit))
		}
		return []*hostileStat{st}
	})
}

// slowBody sends a create whose body stops after its first byte and
// records phonesd's answer: 429 at once beyond the tenant's share, 408
// when the body timeout passes.
func slowBody(addr, token string, st *hostileStat) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		time.Sleep(100 * time.Millisecond)
		return
	}
	defer conn.Close()
	opened := time.Now()
	conn.SetDeadline(opened.Add(2 * slowBodyLimit))
	// Raw bytes: a body that stops after its first byte is no request the public client can send.
	fmt.Fprintf(conn, "POST /accounts/v1/accounts/1/phones HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{", addr, token)
	status := readStatus(bufio.NewReader(conn))
	held := time.Since(opened)
	st.mu.Lock()
	st.maxHold = max(st.maxHold, held)
	st.mu.Unlock()
	st.record(status, "a create whose body stopped after a byte")
}

// junkRate is how many tokens with an invented key id the hostile client
// sends a second, and junkKeyDelay how long the identity provider takes to
// answer meanwhile.
const (
	junkRate     = 100
	junkKeyDelay = 4 * time.Second
	// junkLimit is how long a junk token may wait for its 401: far less
	// than the identity provider's delay, which it must never wait for.
	junkLimit = time.Second
)

// driveJunkTokens runs the normal client alone, then beside a client
// sending tokens signed by a key the identity provider never published,
// each with a key id of its own, while the provider takes 4 s to serve
// its key set: every such token makes phonesd want to refetch the set.
func driveJunkTokens(ctx context.Context, s *trial) error {
	junk, err := idp.NewSigner()
	if err != nil {
		return err
	}
	s.c.iss.SetDelay(junkKeyDelay)
	defer s.c.iss.SetDelay(0)
	return s.besideNormalClient(ctx, "junk tokens", func(addr string, stop <-chan struct{}) []*hostileStat {
		st := newStat("tokens with an unknown key id", "requests", http.StatusUnauthorized)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}
		var wg sync.WaitGroup
		for g := range 10 {
			wg.Go(func() {
				loop(stop, time.Second/(junkRate/10), func(i int) {
					tok, err := junk.Mint(fmt.Sprintf("junk-%d-%d", g, i), auth.Claims{
						Issuer: checkIssuer, Audience: checkAudience, Tenant: hostileTenant, TTL: time.Hour,
					})
					if err != nil {
						return
					}
					// Raw HTTP, as an attacker's: only the status and how long phonesd held the request count.
					req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/accounts/v1/accounts/1/phones", strings.NewReader(`{"number": "1", "type": "MOBILE"}`))
					req.Header.Set("Authorization", "Bearer "+tok)
					began := time.Now()
					status := send(hc, req)
					held := time.Since(began)
					st.mu.Lock()
					st.maxHold = max(st.maxHold, held)
					st.mu.Unlock()
					st.record(status, "a create with an unknown key id")
				})
			})
		}
		wg.Wait()
		if st.maxHold > junkLimit {
			st.unexpected = append(st.unexpected, fmt.Sprintf("a token with an unknown key id waited %.1fs for its answer; want under %s, whatever the identity provider's delay", st.maxHold.Seconds(), junkLimit))
		}
		return []*hostileStat{st}
	})
}

// besideNormalClient runs the normal client at its steady rate, alone for
// a third of the load's duration, then for the duration beside attack,
// and judges: the attack got only the answers it should, and the normal
// client's creates, which no attack may fail, kept their latency.
func (s *trial) besideNormalClient(ctx context.Context, what string, attack func(addr string, stop <-chan struct{}) []*hostileStat) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	r := s.replicas[0]
	stop := make(chan struct{})
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		s.load.paced(normalRate, stop)
	}()
	if err := sleep(ctx, s.c.opts.duration/3); err != nil {
		close(stop)
		<-paced
		return err
	}
	began := time.Now()
	attacked := make(chan []*hostileStat, 1)
	go func() { attacked <- attack(r.Addr, stop) }()
	err := sleep(ctx, s.c.opts.duration)
	close(stop)
	<-paced
	for _, st := range <-attacked {
		s.note("%s", st.String())
		for _, u := range st.unexpected {
			s.violate(what, "%s: %s", st.kind, u)
		}
	}
	if !r.Running() {
		s.violate(what, "phonesd exited under %s (status %d)\n%s", what, r.ExitCode(), r.LogTail())
	}
	creates, _ := s.ledger.snapshot()
	alone, beside := latency.New(), latency.New()
	failed := map[string]int{}
	for _, e := range creates {
		if e.Start.Before(began) {
			alone.Record(e.End.Sub(e.Start))
			continue
		}
		beside.Record(e.End.Sub(e.Start))
		if e.Class != classOK {
			failed[fmt.Sprintf("%d %s", e.Status, e.Err)]++
		}
	}
	for answer, n := range failed {
		s.violate(what, "%d of the normal client's creates answered %s beside %s; want all 200", n, answer, what)
	}
	s.note("normal client alone: %s", latencies(alone))
	s.note("normal client beside %s: %s (limit %s)", what, latencies(beside), s.c.opts.p99Limit)
	if p99 := beside.Quantile(0.99); p99 >= s.c.opts.p99Limit {
		if s.c.opts.short {
			s.note("p99 over the limit: reported, not judged, with --short")
		} else {
			s.violate("latency", "the normal client's p99 is %.1fms beside %s (alone: %.1fms); want under %s", ms(p99), what, ms(alone.Quantile(0.99)), s.c.opts.p99Limit)
		}
	}
	return err
}
