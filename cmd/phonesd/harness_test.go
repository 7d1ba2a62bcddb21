package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/postgres"
	"github.com/phonesd/phonesd/internal/sqlite"
	"github.com/phonesd/phonesd/internal/testkit/eventtest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "phonesd-test"
	testTenant   = "TN-test-1"
)

// testKeys is a signing key and the JWKS that publishes it, served on loopback.
type testKeys struct {
	key *rsa.PrivateKey
	kid string
	url string
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := &testKeys{key: key, kid: "test-key-1"}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: k.kid, Algorithm: "RS256", Use: "sig"}}}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	k.url = srv.URL + "/jwks.json"
	return k
}

// servedBehind serves k's key set through gate, called first on every
// fetch: it may delay the answer, or refuse it with a 503 by returning
// false, as an identity provider in trouble would. It returns the URL.
func (k *testKeys) servedBehind(t *testing.T, gate func() bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !gate() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		resp, err := http.Get(k.url)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// claims are a token's claims; nil values are left out.
type claims map[string]any

func (k *testKeys) baseClaims() claims {
	now := time.Now()
	return claims{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "operator-1",
		"iat":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
		"tenant_id": testTenant,
		"email":     "ops@bank.test",
		"roles":     []string{"crm-operator"},
		"origin":    "CRM",
	}
}

// token signs base claims changed by edits (a nil value deletes a claim).
func (k *testKeys) token(t *testing.T, edits claims) string {
	t.Helper()
	return k.tokenTyped(t, "JWT", edits)
}

// tokenTyped is token with typ as its typ header.
func (k *testKeys) tokenTyped(t *testing.T, typ string, edits claims) string {
	t.Helper()
	c := k.baseClaims()
	for name, v := range edits {
		if v == nil {
			delete(c, name)
			continue
		}
		c[name] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.key},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(map[string]any(c)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// phonesd is a running service, started through run as main starts it.
type phonesd struct {
	t       *testing.T
	base    string
	dataDir string
	// databaseURL is PHONES_DATABASE_URL: empty for the default SQLite file.
	databaseURL string
	keys        *testKeys
	token       string // a tenant-wide token of testTenant
	logs        *syncBuffer
	stderr      *syncBuffer
	done        chan error
	stop        func() error
	// db reads what the service stored; opened on first use.
	db interface {
		Phone(ctx context.Context, tenant string, account, id int64) (phone.Phone, error)
		Close() error
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs phonesd with a test JWKS, a fresh data directory and env on top.
func start(t *testing.T, env map[string]string) *phonesd {
	t.Helper()
	keys := newTestKeys(t)
	// Private, as the data directory of a deployment is: an open one would
	// put phonesd's warning about it in every test's log.
	dataDir := t.TempDir()
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"PHONES_ADDR":         freeAddr(t),
		"PHONES_DATA_DIR":     dataDir,
		"PHONES_JWKS_URL":     keys.url,
		"PHONES_JWT_ISSUER":   testIssuer,
		"PHONES_JWT_AUDIENCE": testAudience,
	}
	for k, v := range env {
		vars[k] = v
	}
	s := startWith(t, vars)
	s.keys = keys
	s.token = keys.token(t, nil)
	return s
}

// backend is a database phonesd runs on in a test.
type backend struct {
	name string
	env  func(t *testing.T) map[string]string
}

// forBackends runs fn once per storage backend, so that every behaviour is
// checked on SQLite and on PostgreSQL by the same test. PostgreSQL runs when
// PHONES_TEST_DATABASE_URL names a server (.ci/run sets it) and skips otherwise.
func forBackends(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range []backend{
		{"sqlite", func(t *testing.T) map[string]string { return map[string]string{} }},
		{"postgres", func(t *testing.T) map[string]string {
			return map[string]string{"PHONES_DATABASE_URL": pgtest.Database(t)}
		}},
	} {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// start runs phonesd on b, with env on top of start's defaults.
func (b backend) start(t *testing.T, env map[string]string) *phonesd {
	t.Helper()
	vars := b.env(t)
	for k, v := range env {
		vars[k] = v
	}
	return start(t, vars)
}

// startWith runs phonesd with exactly vars and waits until it is ready.
func startWith(t *testing.T, vars map[string]string) *phonesd {
	t.Helper()
	s := launch(t, vars)
	s.waitFor("/readyz")
	return s
}

// launch runs phonesd with exactly vars and waits until it answers /healthz.
func launch(t *testing.T, vars map[string]string) *phonesd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &phonesd{t: t, base: "http://" + vars["PHONES_ADDR"], dataDir: vars["PHONES_DATA_DIR"], databaseURL: vars["PHONES_DATABASE_URL"], logs: &syncBuffer{}, stderr: &syncBuffer{}}
	s.done = make(chan error, 1)
	go func() {
		s.done <- run(ctx, []string{"phonesd"}, vars, s.logs, s.stderr)
	}()
	var once sync.Once
	var stopErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-s.done:
			case <-time.After(40 * time.Second):
				stopErr = fmt.Errorf("phonesd did not stop within 40s")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("run returned %v; want nil", err)
		}
		if t.Failed() {
			t.Logf("phonesd's log:\n%s", s.logs.String())
		}
	})
	s.waitFor("/healthz")
	return s
}

// waitFor polls path until it answers 200.
func (s *phonesd) waitFor(path string) {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-s.done:
			s.t.Fatalf("phonesd exited: %v\nlogs:\n%s", err, s.logs.String())
		default:
		}
		resp, err := http.Get(s.base + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not 200 after 15s\nlogs:\n%s", path, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCreatesHeld waits until n creates are waiting for their commit
// (phonesd_group_commit_waiting_creates): with the database locked, they
// have reached storage, past every check before it, and are held there.
func (s *phonesd) waitCreatesHeld(n int) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, m := scrape(s.t, s.base+"/metrics")
		got := counter(m, "phonesd_group_commit_waiting_creates", nil)
		if got >= float64(n) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%v creates waiting for their commit after 10s; want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStopping waits until phonesd refuses new connections: its shutdown
// has begun, and it is draining the requests it holds.
func (s *phonesd) waitStopping() {
	s.t.Helper()
	addr := strings.TrimPrefix(s.base, "http://")
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if err == nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("phonesd still accepts connections 10s after it was told to stop (last dial: %v)", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// response is an answer as a test sees it.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends a request; headers may carry several values for one name.
func (s *phonesd) do(method, path, body string, headers ...[2]string) response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, h := range headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(token string) [2]string { return [2]string{"Authorization", "Bearer " + token} }

var jsonCT = [2]string{"Content-Type", "application/json"}

// create posts a phone with the tenant-wide token.
func (s *phonesd) create(account int64, body string, headers ...[2]string) response {
	s.t.Helper()
	h := append([][2]string{bearer(s.token), jsonCT}, headers...)
	return s.do(http.MethodPost, fmt.Sprintf("/accounts/v1/accounts/%d/phones", account), body, h...)
}

// api returns phonesd's public client with the tenant-wide token, for the
// tests that judge the phones an operation leaves rather than the bytes of
// its answer.
func (s *phonesd) api() *api.Client {
	s.t.Helper()
	c, err := api.NewClient(s.base, api.Token(s.token))
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// answerAs returns the answer res of a call of the public client as T,
// failing t when the call failed or got another answer.
func answerAs[T any](t *testing.T, res any, err error) T {
	t.Helper()
	v, ok := res.(T)
	if err != nil || !ok {
		t.Fatalf("answer %T %+v, error %v; want %T", res, res, err, v)
	}
	return v
}

// createdID checks a 200 and returns its id.
func createdID(t *testing.T, r response) int64 {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, body %s; want 200", r.status, r.body)
	}
	var out struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.ID <= 0 {
		t.Fatalf("body %s; want {\"id\": n > 0}", r.body)
	}
	return out.ID
}

// delivered waits until the relay has delivered every event in the outbox,
// then returns the events file's events. An answered request has committed
// its event, if it wrote one, so after delivered no event of the requests
// answered so far can still arrive: counting them checks that none came
// that should not have, with nothing left to chance.
func (s *phonesd) delivered() []map[string]any {
	s.t.Helper()
	waitDrained(s.t, s.dataDir, s.databaseURL, 10*time.Second)
	return readEvents(s.t, filepath.Join(s.dataDir, eventsFile))
}

// events waits until the event file holds at least n events and returns them all.
func (s *phonesd) events(n int) []map[string]any {
	s.t.Helper()
	path := filepath.Join(s.dataDir, eventsFile)
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := readEvents(s.t, path)
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%d events after 10s; want %d", len(evs), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readEvents returns the events of the file at path, each checked against
// the event contract; none when there is no file.
func readEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		eventtest.CheckLine(t, sc.Bytes())
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("event line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// stored reads a phone straight from the service's database.
func (s *phonesd) stored(tenant string, account, id int64) (phone.Phone, error) {
	s.t.Helper()
	if s.db == nil {
		ctx := context.Background()
		var err error
		if s.databaseURL != "" {
			s.db, err = postgres.Open(ctx, s.databaseURL, postgres.Options{})
		} else {
			s.db, err = sqlite.Open(ctx, filepath.Join(s.dataDir, "phones.db"), sqlite.Options{})
		}
		if err != nil {
			s.t.Fatal(err)
		}
		s.t.Cleanup(func() { s.db.Close() })
	}
	return s.db.Phone(context.Background(), tenant, account, id)
}

// waitLogged waits until phonesd's log holds text, failing after wait.
func (s *phonesd) waitLogged(text string, wait time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(wait)
	for !strings.Contains(s.logs.String(), text) {
		if time.Now().After(deadline) {
			s.t.Fatalf("%q not logged after %s\nlogs:\n%s", text, wait, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
