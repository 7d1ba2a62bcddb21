package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// storedNumbers returns how many phones of account hold each number.
func storedNumbers(t *testing.T, dbURL string, account int64) map[string]int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), "SELECT number FROM phones WHERE account_id = $1", account)
	if err != nil {
		t.Fatal(err)
	}
	numbers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, n := range numbers {
		out[n]++
	}
	return out
}

// TestLostCommitReplyIsNeverAWrongAnswer loses PostgreSQL's reply to the
// COMMIT of multi-row batches of creates sent without Idempotency-Key, each
// number sent once: a create may then answer 500 (its outcome unknown), but
// never 409, and every 200 is stored. An update whose COMMIT reply is lost
// answers 500 too, and its retry with the same If-Match finds it applied.
func TestLostCommitReplyIsNeverAWrongAnswer(t *testing.T) {
	direct := pgtest.Database(t)
	proxied, proxy := viaProxy(t, direct)
	s := start(t, map[string]string{"PHONES_DATABASE_URL": proxied})
	const account = 7
	proxy.LoseCommitReplies(2)

	statuses := map[int]int{}
	okIDs := map[string]int64{}
	sent := 0
	// Creates sent at once share batches; a batch's reply may only be lost
	// once one has formed, so rounds go on until some were.
	for round := 0; round < 20 && proxy.CommitRepliesLost() < 3; round++ {
		const n = 40
		got := make([]response, n)
		var wg sync.WaitGroup
		gun := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-gun
				got[i] = s.create(account, fmt.Sprintf(`{"number": "%d", "type": "MOBILE"}`, 100000+sent+i))
			})
		}
		close(gun)
		wg.Wait()
		for i, r := range got {
			number := strconv.Itoa(100000 + sent + i)
			statuses[r.status]++
			switch r.status {
			case http.StatusOK:
				okIDs[number] = createdID(t, r)
			case http.StatusInternalServerError:
				if string(r.body) != `{"message":"Error creating phone number"}` {
					t.Errorf("number %s: 500 with body %s; want the contract's body", number, r.body)
				}
			default:
				t.Errorf("number %s, sent once: %d %s; want 200, or 500 when its commit's reply was lost", number, r.status, r.body)
			}
		}
		sent += n
	}
	proxy.KeepCommitReplies()
	lost := proxy.CommitRepliesLost()
	t.Logf("%d creates: %v; %d COMMIT replies lost", sent, statuses, lost)
	if lost == 0 || statuses[http.StatusInternalServerError] == 0 {
		t.Fatalf("no COMMIT reply of a multi-row batch was lost in %d creates; the test proved nothing", sent)
	}
	stored := storedNumbers(t, direct, account)
	for number, id := range okIDs {
		if stored[number] != 1 {
			t.Errorf("number %s answered 200 id %d; stored %d times, want once", number, id, stored[number])
		}
	}
	for number, n := range stored {
		if n != 1 {
			t.Errorf("number %s stored %d times; want once", number, n)
		}
	}
	t.Logf("%d of the %d answered 500 were stored: their commit's reply was lost",
		len(stored)-len(okIDs), statuses[http.StatusInternalServerError])

	// An update: any COMMIT reply is lost now, the update's included.
	id := createdID(t, s.create(account, `{"number": "200000", "type": "MOBILE"}`))
	proxy.LoseCommitReplies(0)
	patch := func() response {
		return s.do(http.MethodPatch, fmt.Sprintf("/accounts/v1/accounts/%d/phones/%d", account, id),
			`{"extension": "42"}`, bearer(s.token), jsonCT, [2]string{"If-Match", `"1"`})
	}
	if r := patch(); r.status != http.StatusInternalServerError || string(r.body) != `{"message":"Error updating phone"}` {
		t.Errorf("update whose COMMIT reply was lost: %d %s; want 500 with the contract's body", r.status, r.body)
	}
	proxy.KeepCommitReplies()
	if r := patch(); r.status != http.StatusPreconditionFailed {
		t.Errorf("retry of the update with If-Match \"1\": %d %s; want 412, it was applied", r.status, r.body)
	}
	if p, err := s.stored(testTenant, account, id); err != nil || p.Extension == nil || *p.Extension != "42" {
		t.Errorf("stored after the lost update reply: %+v, %v; want extension 42", p, err)
	}
}
