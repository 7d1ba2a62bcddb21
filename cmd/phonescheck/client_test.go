package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestLoadSendsTheLedgersRequestAndRecordsTheAnswerAsItCame sends creates
// through the load's client to a server answering in turn as the contract
// says, off the contract, with an undocumented status, and with a body cut
// short: the request is the ledger's, byte for byte, and each answer is
// recorded as it came.
func TestLoadSendsTheLedgersRequestAndRecordsTheAnswerAsItCame(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	var gotBody string
	answers := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":7}`)
		},
		func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"seven"}`)
		},
		func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "bad gateway")
		},
		func(w http.ResponseWriter) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":")
			buf.Flush()
		},
	}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, gotBody = r, string(b)
		answer := answers[n%len(answers)]
		n++
		mu.Unlock()
		answer(w)
	}))
	defer srv.Close()

	c := newClient(1)
	defer c.close()
	l := &load{client: c, tokens: tokenSet{{"TN-a", 0}: "tok"}}
	e := &createEntry{Seq: 1, Tenant: "TN-a", Account: 3, Key: "k1", CustomerID: ptr(int64(9)),
		Draft: draft{Number: "900001", Type: "FAX", AreaCode: ptr(11), Extension: ptr("ext 1")}}
	e.setBody()

	a := l.postCreate(srv.URL, e).attempt()
	mu.Lock()
	req, body := got, gotBody
	mu.Unlock()
	if req.URL.Path != "/accounts/v1/accounts/3/phones" || req.Method != http.MethodPost {
		t.Errorf("sent %s %s; want POST /accounts/v1/accounts/3/phones", req.Method, req.URL.Path)
	}
	if body != e.Body || body != `{"number":"900001","type":"FAX","area_code":11,"extension":"ext 1"}` {
		t.Errorf("sent body %s; want the ledger's, %s", body, e.Body)
	}
	for name, want := range map[string]string{"Authorization": "Bearer tok", "Idempotency-Key": "k1", "X-Customer-Id": "9", "Content-Type": "application/json"} {
		if v := req.Header.Get(name); v != want {
			t.Errorf("sent %s: %q; want %q", name, v, want)
		}
	}
	if a.Status != 200 || a.Class != classOK || a.ID != 7 || a.Contract != "" || a.Err != "" {
		t.Errorf("answer as the contract says: got %+v; want a 200 with id 7", a)
	}

	a = l.postCreate(srv.URL, e).attempt()
	if a.Status != 200 || a.Class != classOK || a.Contract == "" {
		t.Errorf("200 off the contract: got %+v; want a 200 with the client's refusal", a)
	}
	a = l.postCreate(srv.URL, e).attempt()
	if a.Status != 502 || a.Class != classUnknown || !strings.Contains(a.Contract, "502") {
		t.Errorf("undocumented status: got %+v; want a 502, unknown, refused by the client", a)
	}
	a = l.postCreate(srv.URL, e).attempt()
	if a.Status != 0 || a.Class != classUnknown || a.Err == "" || a.Contract != "" {
		t.Errorf("body cut short: got %+v; want no answer", a)
	}
}
