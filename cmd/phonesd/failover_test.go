package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// TestPostgresFailoverToPromotedStandby runs phonesd on a private primary
// with a synchronous standby, through a URL that names both, kills the
// primary's whole server with SIGKILL, promotes the standby as a failover
// tool would, and checks through the real server that phonesd writes to
// the promoted standby without a restart: what was acknowledged before the
// kill is there, creates and updates work (the outbox order lock is taken
// there), and the relay delivers from there (so does its lease). Until the
// promotion no server accepts writes, and the standby is never written to.
func TestPostgresFailoverToPromotedStandby(t *testing.T) {
	ctx := context.Background()
	primary := pgtest.NewCluster(t, "primary", "synchronous_standby_names=standby1")
	standby := primary.NewStandby(t, "standby1", "sync")
	if _, err := primary.CreateDatabase(ctx, "phonesd"); err != nil {
		t.Fatal(err)
	}
	dbURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/phonesd?sslmode=disable&target_session_attrs=read-write", primary.Port, standby.Port)
	s := start(t, map[string]string{"PHONES_DATABASE_URL": dbURL})
	acked := createdID(t, s.create(1, `{"number": "1111-1111", "type": "MOBILE"}`))
	s.events(1)

	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	began := time.Now()
	r := s.create(1, `{"number": "2222-2222", "type": "MOBILE"}`)
	if took := time.Since(began); r.status != http.StatusInternalServerError || took > 2*time.Second {
		t.Errorf("create with the primary gone and the standby not promoted: %d %s after %v; want 500 within the storage timeout", r.status, r.body, took)
	}
	// /readyz answers from a probe of storage at most about a second old.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := s.do(http.MethodGet, "/readyz", "")
		if r.status == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("/readyz with no server accepting writes: %d after 3s; want 503", r.status)
			break
		}
	}

	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	var after int64
	for deadline := time.Now().Add(15 * time.Second); ; {
		r := s.create(1, `{"number": "3333-3333", "type": "MOBILE"}`, [2]string{"Idempotency-Key", "after-failover"})
		if r.status == http.StatusOK {
			after = createdID(t, r)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no create answered 200 within 15s of the promotion; last %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("first 200 %v after the kill, %v after the promotion", time.Since(killed).Round(time.Millisecond), time.Since(promoted).Round(time.Millisecond))
	s.waitFor("/readyz")

	path := fmt.Sprintf("/accounts/v1/accounts/1/phones/%d", acked)
	if r := s.do(http.MethodGet, path, "", bearer(s.token)); r.status != http.StatusOK {
		t.Errorf("GET the phone acknowledged before the kill: %d %s; want 200", r.status, r.body)
	}
	if r := s.do(http.MethodPatch, path, `{"active": false}`, bearer(s.token), jsonCT); r.status != http.StatusOK {
		t.Errorf("PATCH it on the promoted standby: %d %s; want 200", r.status, r.body)
	}

	onStandby := standby.URL("phonesd")
	if n := countRows(t, onStandby, "SELECT count(*) FROM phones"); n != 2 {
		t.Errorf("%d phones on the promoted standby; want 2: the one acknowledged before the kill and %d", n, after)
	}
	for deadline := time.Now().Add(10 * time.Second); countRows(t, onStandby, "SELECT count(*) FROM outbox, relay_lease AS l WHERE (xid, seq) > (l.position_xid, l.position_seq)") != 0; {
		if time.Now().After(deadline) {
			t.Fatal("events still unsent on the promoted standby after 10s: the relay did not take its lease there")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Marking events sent does not wait for the standby (a lost mark only
	// delivers again), so an event delivered just before the kill may come
	// again: delivery is at least once.
	var types []string
	seen := map[any]bool{}
	for _, ev := range s.events(3) {
		if !seen[ev["event_id"]] {
			seen[ev["event_id"]] = true
			types = append(types, fmt.Sprint(ev["event_type"]))
		}
	}
	if want := "[phone_creation-1 phone_creation-1 phone_change-1]"; fmt.Sprint(types) != want {
		t.Errorf("distinct events delivered: %v; want %s", types, want)
	}
}
