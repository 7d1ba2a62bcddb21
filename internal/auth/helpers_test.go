package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "phonesd"
)

var testEpoch = time.Unix(1_700_000_000, 0)

type testKeyring struct {
	rsa     *rsa.PrivateKey
	rsa1024 *rsa.PrivateKey
	p256    *ecdsa.PrivateKey
	p384    *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
}

// Key generation dominates test time under -race, so every test shares one ring.
var sharedKeys = sync.OnceValues(func() (*testKeyring, error) {
	var k testKeyring
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		return nil, err
	}
	if k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		return nil, err
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	return &k, nil
})

func keyring(t *testing.T) *testKeyring {
	t.Helper()
	k, err := sharedKeys()
	if err != nil {
		t.Fatalf("generate keys: %v", err)
	}
	return k
}

// baseJWKS is the key set most tests serve: kid "rsa" declares no alg, while
// "rsa-rs256" is the same key pinned to RS256.
func baseJWKS(k *testKeyring) []jose.JSONWebKey {
	return []jose.JSONWebKey{
		{Key: &k.rsa.PublicKey, KeyID: "rsa", Use: "sig"},
		{Key: &k.rsa.PublicKey, KeyID: "rsa-rs256", Algorithm: "RS256"},
		{Key: &k.p256.PublicKey, KeyID: "p256", Algorithm: "ES256", Use: "sig"},
		{Key: &k.p384.PublicKey, KeyID: "p384"},
		{Key: k.ed.Public(), KeyID: "ed", Algorithm: "EdDSA"},
		{Key: &k.rsa1024.PublicKey, KeyID: "weak", Algorithm: "RS256"},
		{Key: &k.p256.PublicKey, KeyID: "enc-only", Use: "enc"},
	}
}

func marshalJWKS(t *testing.T, keys []jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatalf("marshal jwks: %v", err)
	}
	return b
}

// jwksServer serves a swappable response on loopback and counts requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64
	// failFirst makes the first requests answer 503; set before any request.
	failFirst int64

	mu     sync.Mutex
	status int
	body   []byte
	delay  time.Duration
	// hold, when set, keeps each answer back until it is closed: a key
	// server as slow as a test needs, with no clock in it.
	hold chan struct{}
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.hits.Add(1)
		if n <= s.failFirst {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		status, body, delay, hold := s.status, s.body, s.delay, s.hold
		s.mu.Unlock()
		time.Sleep(delay)
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

// fakeClock is safe for the concurrent readers Verify has.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(testEpoch.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// startVerifier runs a URL-mode verifier against srv and waits until it is
// ready; edits change its configuration.
func startVerifier(t *testing.T, srv *jwksServer, clock *fakeClock, edits ...func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		JWKSURL:            srv.URL + "/jwks.json",
		Issuer:             testIssuer,
		Audience:           testAudience,
		RefreshInterval:    time.Hour,
		MinRefetchInterval: time.Minute,
		Now:                clock.Now,
	}
	for _, edit := range edits {
		edit(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	v.retryBase = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, "verifier ready", v.Ready)
	return v
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// claims returns a valid claim set at testEpoch with edits applied; a nil
// value deletes the claim.
func claims(edits map[string]any) map[string]any {
	c := map[string]any{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "user-1",
		"exp":       testEpoch.Add(time.Hour).Unix(),
		"iat":       testEpoch.Unix(),
		"tenant_id": "TN-1",
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// rawJSON lets a test put exact JSON (e.g. null or 1.5e0) into a claim.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, payload map[string]any) string {
	t.Helper()
	return signWith(t, alg, key, kid, "JWT", payload)
}

// signTyped signs payload with the RSA key under kid "rsa" and typ as the
// typ header (nil: none).
func signTyped(t *testing.T, typ any, payload map[string]any) string {
	t.Helper()
	return signWith(t, jose.RS256, keyring(t).rsa, "rsa", typ, payload)
}

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, typ any, payload map[string]any) string {
	t.Helper()
	body, err := json.Marshal(payload)
	if err != nil {
		t.Fatalf("marshal claims: %v", err)
	}
	opts := &jose.SignerOptions{}
	if typ != nil {
		opts = opts.WithHeader(jose.HeaderType, typ)
	}
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("new signer %s: %v", alg, err)
	}
	obj, err := signer.Sign(body)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return token
}
