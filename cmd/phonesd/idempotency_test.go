package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func key(k string) [2]string { return [2]string{"Idempotency-Key", k} }

func TestIdempotencyKeyReplaysTheFirstAnswer(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		body := `{"number": "91234-5678", "type": "MOBILE", "area_code": 11}`
		first := s.create(60, body, key("k-1"), [2]string{"x-customer-id", "7"})
		id := createdID(t, first)
		again := s.create(60, body, key("k-1"), [2]string{"x-customer-id", "7"})
		if again.status != 200 || string(again.body) != string(first.body) {
			t.Fatalf("retry: %d %s; want the first answer %s byte for byte", again.status, again.body, first.body)
		}
		if r := s.create(60, `{"number": "91234-5678", "type": "MOBILE", "area_code": 12}`, key("k-1"), [2]string{"x-customer-id", "7"}); r.status != 422 ||
			string(r.body) != `{"message":"Idempotency-Key was already used with another request"}` {
			t.Errorf("same key, other body: %d %s; want 422", r.status, r.body)
		}
		if r := s.create(60, body, key("k-1")); r.status != 422 {
			t.Errorf("same key, other x-customer-id: %d %s; want 422", r.status, r.body)
		}
		if r := s.create(61, body, key("k-1"), [2]string{"x-customer-id", "7"}); r.status != 422 {
			t.Errorf("same key, other path: %d %s; want 422", r.status, r.body)
		}

		// A 409 is an answer too: replayed even once the number is free.
		dup := s.create(60, body, key("k-2"))
		if dup.status != 409 {
			t.Fatalf("duplicate: %d %s", dup.status, dup.body)
		}
		if r := s.patch(60, id, `{"active": false}`); r.status != 200 {
			t.Fatalf("deactivate: %d %s", r.status, r.body)
		}
		if r := s.create(60, body, key("k-2")); r.status != 409 || string(r.body) != string(dup.body) {
			t.Errorf("retry of the duplicate: %d %s; want the first 409", r.status, r.body)
		}

		// A 400 is not kept: the corrected request runs for real.
		if r := s.create(60, `{"number": "x", "type": "MOBILE"}`, key("k-3")); r.status != 400 {
			t.Fatalf("bad body: %d", r.status)
		}
		createdID(t, s.create(60, `{"number": "33", "type": "MOBILE"}`, key("k-3")))

		// Keys are scoped to the tenant, and to the account of an account token.
		other := s.keys.token(t, claims{"tenant_id": "TN-other"})
		r := s.do(http.MethodPost, "/accounts/v1/accounts/60/phones", body, bearer(other), jsonCT, key("k-1"), [2]string{"x-customer-id", "7"})
		if otherID := createdID(t, r); otherID == id {
			t.Errorf("another tenant got this tenant's answer")
		}
		acct := s.keys.token(t, claims{"account_id": 60})
		r = s.do(http.MethodPost, "/accounts/v1/accounts/60/phones", `{"number": "44", "type": "MOBILE"}`, bearer(acct), jsonCT, key("k-1"), [2]string{"x-customer-id", "7"})
		createdID(t, r)

		// Created: k-1, k-3, other tenant, account token = 4 (+1 deactivation event).
		if n := len(s.delivered()); n != 5 {
			t.Errorf("%d events; want 5: a replay writes none", n)
		}
		checkRejected(t, s, []rejected{
			{name: "empty key", path: "/accounts/v1/accounts/60/phones", body: okBody, headers: [][2]string{bearer(s.token), jsonCT, key("")}, status: 400, field: "Idempotency-Key"},
			{name: "256 characters", path: "/accounts/v1/accounts/60/phones", body: okBody, headers: [][2]string{bearer(s.token), jsonCT, key(strings.Repeat("k", 256))}, status: 400, field: "Idempotency-Key"},
			{name: "non-ASCII", path: "/accounts/v1/accounts/60/phones", body: okBody, headers: [][2]string{bearer(s.token), jsonCT, key("clé")}, status: 400, field: "Idempotency-Key"},
			{name: "sent twice", path: "/accounts/v1/accounts/60/phones", body: okBody, headers: [][2]string{bearer(s.token), jsonCT, key("a"), key("b")}, status: 400, field: "Idempotency-Key"},
		}, 5)
		createdID(t, s.create(62, okBody, key(strings.Repeat("k", 255))))
	})
}

func TestIdempotencyKeyWhileTheFirstRequestRuns(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, map[string]string{"PHONES_STORAGE_TIMEOUT": "5s"})
		release := lockDatabase(t, s)
		first := make(chan response, 1)
		go func() { first <- s.create(70, okBody, key("slow")) }()
		// Held at storage, the first create has claimed its key.
		s.waitCreatesHeld(1)
		r := s.create(70, okBody, key("slow"))
		if r.status != 409 || string(r.body) != `{"message":"A request with this Idempotency-Key is still in progress: retry later"}` {
			t.Errorf("retry while the first runs: %d %s; want 409 in progress", r.status, r.body)
		}
		release()
		id := createdID(t, <-first)
		if got := createdID(t, s.create(70, okBody, key("slow"))); got != id {
			t.Errorf("retry after: id %d; want %d", got, id)
		}
	})
}

func TestIdempotencyKeyExpires(t *testing.T) {
	s := start(t, map[string]string{"PHONES_IDEMPOTENCY_TTL": "1s"})
	createdID(t, s.create(80, okBody, key("short")))
	// Waits for time itself, not for an event: the key's TTL to run out.
	time.Sleep(1100 * time.Millisecond)
	createdID(t, s.create(80, `{"number": "55", "type": "MOBILE"}`, key("short")))
}
