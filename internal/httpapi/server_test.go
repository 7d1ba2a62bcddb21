package httpapi

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/health"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/sqlite"
)

// testServer is the real handler over a real SQLite file and a verifier of
// real signed tokens; only the listener is left out, so fuzzing stays fast.
type testServer struct {
	*Server
	token string
}

func newTestServer(t testing.TB) testServer {
	t.Helper()
	srv, key := newHandler(t)
	return testServer{Server: srv, token: mint(t, key, auth.Claims{Tenant: "TN-1", Account: 1})}
}

// newHandler returns the real handler over a real SQLite file, and the key
// that signs the tokens it trusts.
func newHandler(tb testing.TB) (*Server, *auth.DevKey) {
	tb.Helper()
	return newHandlerWith(tb, func(*Config) {})
}

// newHandlerWith is newHandler with a configuration edited by edit.
func newHandlerWith(tb testing.TB, edit func(*Config)) (*Server, *auth.DevKey) {
	tb.Helper()
	dir := tb.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "phones.db"), sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Keys: key.KeySet(), Issuer: auth.DevIssuer, Audience: auth.DevAudience})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config{
		Logger:        slog.New(slog.DiscardHandler),
		Phones:        phone.NewService(db, nil),
		Verifier:      v,
		Health:        health.NewProbe(db),
		Spec:          api.Spec,
		EventSpec:     api.AsyncAPI,
		EventSpecJSON: eventSpecJSON(tb),
		// The tests' own bounds, roomy for a busy machine.
		StorageTimeout: 5 * time.Second,
		IdempotencyTTL: 24 * time.Hour,
	}
	edit(&cfg)
	srv, err := NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return srv, key
}

// mint signs a token of c for the handler of key.
func mint(tb testing.TB, key *auth.DevKey, c auth.Claims) string {
	tb.Helper()
	c.Issuer, c.Audience = auth.DevIssuer, auth.DevAudience
	token, err := key.Mint(c)
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

func (s testServer) post(path string, header http.Header, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "http://phonesd.test"+path, bytes.NewReader(body))
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

func TestDrainAnswers503(t *testing.T) {
	s := newTestServer(t)
	body := []byte(`{"number": "1", "type": "MOBILE"}`)
	if rec := s.post("/accounts/v1/accounts/1/phones", nil, body); rec.Code != http.StatusOK {
		t.Fatalf("before draining: status %d %s; want 200", rec.Code, rec.Body)
	}
	s.Drain()
	rec := s.post("/accounts/v1/accounts/1/phones", nil, []byte(`{"number": "2", "type": "MOBILE"}`))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("draining: status %d Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if got := rec.Body.String(); got != `{"message":"Service is shutting down"}` {
		t.Errorf("body %s", got)
	}
	ready := httptest.NewRecorder()
	s.ServeHTTP(ready, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if ready.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d; want 503", ready.Code)
	}
}

// documented is every status Create phone's contract lists.
var documented = map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 405: true, 409: true, 413: true, 415: true, 503: true}

// FuzzCreatePhone sends arbitrary paths, headers and bodies through the whole
// handler: the answer is always a documented status, never a 5xx.
func FuzzCreatePhone(f *testing.F) {
	for _, b := range decodeSeeds {
		f.Add("1", "", "application/json", []byte(b))
	}
	f.Add("2", "50624", "application/json; charset=utf-8", []byte(`{"number": "1", "type": "MOBILE"}`))
	f.Add("1", "1", "application/vnd.x+json", []byte(`{"number": "1", "type": "MOBILE", "active": false}`))
	f.Add("101%2F..%2F201", "x", "text/plain", []byte(`{}`))
	f.Add("%31", "", "", []byte(`{"number": "1", "type": "MOBILE"}`))
	s := newTestServer(f)
	f.Fuzz(func(t *testing.T, account, customer, contentType string, body []byte) {
		h := http.Header{}
		if customer != "" {
			h.Set("X-Customer-Id", customer)
		}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		req, err := http.NewRequest(http.MethodPost, "http://phonesd.test/accounts/v1/accounts/"+account+"/phones", bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.Header = h
		req.Header.Set("Authorization", "Bearer "+s.token)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if !documented[rec.Code] {
			t.Fatalf("account %q customer %q type %q body %q: status %d %s", account, customer, contentType, body, rec.Code, rec.Body)
		}
		if rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d with Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
		}
	})
}
