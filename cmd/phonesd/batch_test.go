package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentCreatesWithDuplicates drives 1,000 creates at once, a third
// of them deliberate duplicates, and checks every answer against the stored
// rows and the delivered events: the creates share commits, and each still
// gets its own id or its own 409.
func TestConcurrentCreatesWithDuplicates(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		// 128 requests in flight on a machine that may be running other
		// tests too: this checks answers, not latency, so give storage time.
		s := b.start(t, map[string]string{"PHONES_STORAGE_TIMEOUT": "30s", "PHONES_DB_STATEMENT_TIMEOUT": "30s"})
		type req struct {
			account int64
			body    string
			key     string // requests with one key: exactly one may succeed
		}
		var reqs []req
		for i := range 500 {
			account := int64(1 + i%20)
			body := fmt.Sprintf(`{"number": "55-%04d", "type": "MOBILE", "area_code": %d}`, i, 10+i%5)
			copies := 1
			if i%3 == 0 {
				copies = 3 // sent three times: one 200, two 409s
			}
			for range copies {
				reqs = append(reqs, req{account, body, fmt.Sprintf("%d/%d", account, i)})
			}
		}
		for i := len(reqs); i < 1000; i++ { // inactive duplicates never conflict
			reqs = append(reqs, req{1, `{"number": "55-0000", "type": "MOBILE", "area_code": 10, "active": false}`, fmt.Sprintf("inactive/%d", i)})
		}
		type answer struct {
			status int
			id     int64
		}
		answers := make([]answer, len(reqs))
		var wg sync.WaitGroup
		gun := make(chan struct{})
		sem := make(chan struct{}, 128)
		for i, r := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gun
				sem <- struct{}{}
				defer func() { <-sem }()
				resp := s.create(r.account, r.body)
				answers[i].status = resp.status
				if resp.status == 200 {
					answers[i].id = decodeAs[struct{ ID int64 }](t, resp).ID
				}
			}()
		}
		began := time.Now()
		close(gun)
		wg.Wait()
		t.Logf("1000 creates in %v", time.Since(began))

		okPerKey := map[string]int{}
		ids := map[int64]int{} // id -> request index
		for i, a := range answers {
			switch a.status {
			case 200:
				okPerKey[reqs[i].key]++
				if _, dup := ids[a.id]; dup {
					t.Fatalf("id %d answered twice", a.id)
				}
				ids[a.id] = i
			case 409:
			default:
				t.Fatalf("request %d: status %d", i, a.status)
			}
		}
		for _, r := range reqs {
			if okPerKey[r.key] != 1 {
				t.Fatalf("key %s: %d successes; want exactly 1", r.key, okPerKey[r.key])
			}
		}
		if len(ids) != len(okPerKey) {
			t.Errorf("%d successes; want one per key, %d", len(ids), len(okPerKey))
		}
		for id, i := range ids {
			p, err := s.stored(testTenant, reqs[i].account, id)
			if err != nil {
				t.Fatalf("answered id %d not stored under account %d: %v", id, reqs[i].account, err)
			}
			want := decodeAs[struct{ Number string }](t, response{body: []byte(reqs[i].body)})
			if p.Number != want.Number || p.Active != !strings.HasPrefix(reqs[i].key, "inactive") {
				t.Errorf("stored %+v for request %s", p, reqs[i].body)
			}
		}
		evs := s.delivered()
		if len(evs) != len(ids) {
			t.Fatalf("%d events; want one per success, %d", len(evs), len(ids))
		}
		last := int64(0)
		for _, ev := range evs {
			id := int64(ev["data"].(map[string]any)["object"].(map[string]any)["id"].(float64))
			if _, ok := ids[id]; !ok {
				t.Fatalf("event for id %d, which no answer reported", id)
			}
			if id <= last {
				t.Fatalf("event for id %d after id %d: events out of commit order", id, last)
			}
			last = id
		}
	})
}
