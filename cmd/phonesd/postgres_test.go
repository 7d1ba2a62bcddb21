package main

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/testkit/faultproxy"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// viaProxy returns dbURL with its host replaced by a fault proxy's address.
// The proxy follows PostgreSQL's messages, so that it can also lose COMMIT
// replies, and the link is unencrypted (loopback), so that it can read them.
func viaProxy(t *testing.T, dbURL string) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.StartPostgres(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return u.String(), p
}

func countRows(t *testing.T, dbURL, query string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgresOutageAnswers500AndRecovers(t *testing.T) {
	direct := pgtest.Database(t)
	proxied, proxy := viaProxy(t, direct)
	s := start(t, map[string]string{"PHONES_DATABASE_URL": proxied})
	createdID(t, s.create(1, `{"number": "1", "type": "MOBILE"}`))

	for _, c := range []struct {
		name string
		mode faultproxy.Mode
	}{
		{"cut", faultproxy.Cut},
		{"blackhole", faultproxy.Blackhole},
	} {
		t.Run(c.name, func(t *testing.T) {
			proxy.Set(c.mode)
			began := time.Now()
			r := s.create(1, `{"number": "2", "type": "MOBILE"}`)
			if took := time.Since(began); took > 2*time.Second {
				t.Errorf("answered after %v; want within 2s", took)
			}
			if r.status != 500 || string(r.body) != `{"message":"Error creating phone number"}` {
				t.Errorf("status %d body %s; want 500 with the contract's body", r.status, r.body)
			}
			// /readyz answers from a probe of storage at most about a
			// second old.
			for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				r := s.do(http.MethodGet, "/readyz", "")
				if r.status == http.StatusServiceUnavailable {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("/readyz during the outage: %d after 3s; want 503", r.status)
					break
				}
			}
			proxy.Set(faultproxy.Pass)
			s.waitFor("/readyz")
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := s.create(1, `{"number": "2", "type": "MOBILE", "active": false}`)
				if r.status == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no recovery after 10s: last status %d %s", r.status, r.body)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	// One event per stored phone: no failed create left one behind.
	rows := countRows(t, direct, "SELECT count(*) FROM phones")
	if n := len(s.events(rows)); n != rows {
		t.Errorf("%d events for %d phones", n, rows)
	}
}

func TestPostgresTwoReplicasShareTheDuplicateRule(t *testing.T) {
	dbURL := pgtest.Database(t)
	a := start(t, map[string]string{"PHONES_DATABASE_URL": dbURL})
	b := startWith(t, map[string]string{
		"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir(), "PHONES_DATABASE_URL": dbURL,
		"PHONES_JWKS_URL": a.keys.url, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
	})
	b.token = a.token
	const n = 20
	statuses := make([]int, n)
	var wg sync.WaitGroup
	gun := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gun
			s := a
			if i%2 == 1 {
				s = b
			}
			statuses[i] = s.create(9, `{"number": "11 5555-0000", "type": "MOBILE", "area_code": 11}`).status
		}()
	}
	close(gun)
	wg.Wait()
	counts := map[int]int{}
	for _, st := range statuses {
		counts[st]++
	}
	if counts[200] != 1 || counts[409] != n-1 {
		t.Fatalf("statuses %v; want one 200 and %d 409s", counts, n-1)
	}
	if rows := countRows(t, dbURL, "SELECT count(*) FROM phones"); rows != 1 {
		t.Errorf("%d rows; want 1", rows)
	}
	if sent := countRows(t, dbURL, "SELECT count(*) FROM outbox"); sent != 1 {
		t.Errorf("%d outbox rows; want 1", sent)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		total := len(readEvents(t, filepath.Join(a.dataDir, eventsFile))) + len(readEvents(t, filepath.Join(b.dataDir, eventsFile)))
		if total == 1 && countRows(t, dbURL, "SELECT count(*) FROM outbox, relay_lease AS l WHERE (xid, seq) > (l.position_xid, l.position_seq)") == 0 {
			break
		}
		if total > 1 || time.Now().After(deadline) {
			t.Fatalf("%d events delivered by the two replicas; want exactly 1", total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Nothing is delivered twice later: once both replicas have stopped,
	// each after a last delivery round (its shutdown's flush), no round is
	// left to come.
	for _, s := range []*phonesd{a, b} {
		if err := s.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
	}
	total := len(readEvents(t, filepath.Join(a.dataDir, eventsFile))) + len(readEvents(t, filepath.Join(b.dataDir, eventsFile)))
	if total != 1 {
		t.Errorf("%d events delivered by the two replicas; want exactly 1", total)
	}
}
