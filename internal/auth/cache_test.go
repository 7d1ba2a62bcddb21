package auth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestCacheServesVerifiedTokens: a token verified once is answered from the
// cache, without its signature being checked again.
func TestCacheServesVerifiedTokens(t *testing.T) {
	k := keyring(t)
	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	v := startVerifier(t, srv, newFakeClock(), func(c *Config) { c.CacheSize = 100 })
	token := sign(t, jose.RS256, k.rsa, "rsa", claims(nil))
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries after one verification; want 1", n)
	}
	// What Verify answers now comes from the cache: change what it holds.
	key := tokenKey(token)
	hit, _ := v.cache.get(key)
	hit.principal.Tenant = "TN-from-the-cache"
	v.cache.put(key, hit)
	p, err := v.Verify(context.Background(), token)
	if err != nil || p.Tenant != "TN-from-the-cache" {
		t.Errorf("Verify of a cached token: %+v, %v; want the cached principal", p, err)
	}
}

// TestCached: Cached answers only for a token verified before and still
// valid, and never verifies one itself.
func TestCached(t *testing.T) {
	k := keyring(t)
	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	clock := newFakeClock()
	v := startVerifier(t, srv, clock, func(c *Config) { c.CacheSize = 100 })
	token := sign(t, jose.RS256, k.rsa, "rsa", claims(map[string]any{"exp": testEpoch.Add(time.Minute).Unix()}))
	if p, ok := v.Cached(token); ok {
		t.Fatalf("Cached of a token never verified: %+v; want false", p)
	}
	if v.cache.len() != 0 {
		t.Fatalf("Cached verified the token; want it left to Verify")
	}
	want, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := v.Cached(token); !ok || p.Tenant != want.Tenant {
		t.Errorf("Cached of a verified token: %+v, %v; want %+v", p, ok, want)
	}
	if _, ok := v.Cached(token + "A"); ok {
		t.Errorf("Cached of another spelling of the token: true; want false")
	}
	clock.Advance(2 * time.Minute) // expired beyond the leeway
	if _, ok := v.Cached(token); ok {
		t.Errorf("Cached of an expired token: true; want false, for Verify to give the reason")
	}
	off := startVerifier(t, srv, clock, func(c *Config) { c.CacheSize = 0 })
	fresh := sign(t, jose.RS256, k.rsa, "rsa", claims(nil))
	if _, err := off.Verify(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	if _, ok := off.Cached(fresh); ok {
		t.Errorf("Cached without a cache: true; want false")
	}
}

// TestCacheRechecksExpiry: a cached token is refused once it expires, with
// the configured leeway, and once the clock falls before its nbf.
func TestCacheRechecksExpiry(t *testing.T) {
	k := keyring(t)
	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	clock := newFakeClock()
	v := startVerifier(t, srv, clock, func(c *Config) { c.CacheSize = 100 })
	token := sign(t, jose.RS256, k.rsa, "rsa", claims(map[string]any{
		"exp": testEpoch.Add(time.Minute).Unix(),
		"nbf": testEpoch.Add(-time.Minute).Unix(),
	}))
	checkVerify(t, v, token, Principal{Tenant: "TN-1", Subject: "user-1", Roles: []string{}, Origin: "API"}, "")

	clock.Advance(-2 * time.Minute) // before nbf, beyond the leeway
	checkVerify(t, v, token, Principal{}, "token not yet valid")
	clock.Advance(2 * time.Minute)
	checkVerify(t, v, token, Principal{Tenant: "TN-1", Subject: "user-1", Roles: []string{}, Origin: "API"}, "")

	clock.Advance(time.Minute + 20*time.Second) // expired, within the leeway
	checkVerify(t, v, token, Principal{Tenant: "TN-1", Subject: "user-1", Roles: []string{}, Origin: "API"}, "")
	clock.Advance(11 * time.Second) // beyond it
	checkVerify(t, v, token, Principal{}, "token expired")
	if n := v.cache.len(); n != 0 {
		t.Errorf("cache holds %d entries after the token expired; want 0", n)
	}
}

// TestCacheFollowsKeyRotation: a key removed from the set at a refresh stops
// every cached token it signed at once; a kid whose key changed stops them
// too; tokens of the keys that stay are still served.
func TestCacheFollowsKeyRotation(t *testing.T) {
	k := keyring(t)
	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	v := startVerifier(t, srv, newFakeClock(), func(c *Config) { c.CacheSize = 100 })
	want := Principal{Tenant: "TN-1", Subject: "user-1", Roles: []string{}, Origin: "API"}
	rsaToken := sign(t, jose.RS256, k.rsa, "rsa", claims(nil))
	edToken := sign(t, jose.EdDSA, k.ed, "ed", claims(nil))
	p256Token := sign(t, jose.ES256, k.p256, "p256", claims(nil))
	for _, tok := range []string{rsaToken, edToken, p256Token} {
		checkVerify(t, v, tok, want, "")
	}

	// The next set drops "rsa" and puts another key under "ed".
	var next []jose.JSONWebKey
	for _, key := range baseJWKS(k) {
		switch key.KeyID {
		case "rsa":
			continue
		case "ed":
			key.Key = &k.p384.PublicKey
			key.Algorithm = ""
		}
		next = append(next, key)
	}
	srv.serve(http.StatusOK, marshalJWKS(t, next))
	if err := v.fetch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	checkVerify(t, v, rsaToken, Principal{}, "unknown token signing key")
	checkVerify(t, v, edToken, Principal{}, "invalid token signature")
	checkVerify(t, v, p256Token, want, "")
}

// TestCacheKeepsNoFailure: a token that fails verification is never kept,
// so it fails every time.
func TestCacheKeepsNoFailure(t *testing.T) {
	k := keyring(t)
	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	v := startVerifier(t, srv, newFakeClock(), func(c *Config) { c.CacheSize = 100 })
	valid := strings.Split(sign(t, jose.RS256, k.rsa, "rsa", claims(nil)), ".")
	other := strings.Split(sign(t, jose.RS256, k.rsa, "rsa", claims(map[string]any{"tenant_id": "TN-2"})), ".")
	forged := valid[0] + "." + other[1] + "." + valid[2] // another payload under the first signature
	for range 3 {
		checkVerify(t, v, forged, Principal{}, "invalid token signature")
	}
	if n := v.cache.len(); n != 0 {
		t.Errorf("cache holds %d entries after failures only; want 0", n)
	}
}

// TestCacheBounds: the cache never holds more entries than its size, nor a
// token whose principal is too large to keep.
func TestCacheBounds(t *testing.T) {
	k := keyring(t)
	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	v := startVerifier(t, srv, newFakeClock(), func(c *Config) { c.CacheSize = 64 })
	for i := range 500 {
		tok := sign(t, jose.EdDSA, k.ed, "ed", claims(map[string]any{"sub": fmt.Sprintf("user-%d", i)}))
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		if n := v.cache.len(); n > 64 {
			t.Fatalf("cache holds %d entries; want at most 64", n)
		}
	}
	roles := make([]string, 200)
	for i := range roles {
		roles[i] = fmt.Sprintf("role-%03d", i)
	}
	big := sign(t, jose.EdDSA, k.ed, "ed", claims(map[string]any{"roles": roles}))
	if _, err := v.Verify(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.cache.get(tokenKey(big)); ok {
		t.Error("a token with 200 roles is cached; want it verified each time instead")
	}
	var none *Verifier
	if none, _ = NewVerifier(Config{Keys: &jose.JSONWebKeySet{Keys: baseJWKS(k)}, Issuer: testIssuer, Audience: testAudience, Now: newFakeClock().Now}); none.cache != nil {
		t.Error("CacheSize 0 made a cache")
	}
}

// TestCacheConcurrent verifies many tokens from many goroutines, some of
// them refused, while the key set is refreshed (run with -race).
func TestCacheConcurrent(t *testing.T) {
	k := keyring(t)
	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	v := startVerifier(t, srv, newFakeClock(), func(c *Config) { c.CacheSize = 32 })
	var tokens []string
	for i := range 64 {
		tokens = append(tokens, sign(t, jose.EdDSA, k.ed, "ed", claims(map[string]any{"sub": fmt.Sprintf("user-%d", i)})))
	}
	bad := sign(t, jose.EdDSA, k.ed, "ed", claims(map[string]any{"tenant_id": nil}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				tok := tokens[(g*7+i)%len(tokens)]
				if _, err := v.Verify(context.Background(), tok); err != nil {
					t.Errorf("Verify: %v", err)
					return
				}
				if _, err := v.Verify(context.Background(), bad); !isAuthError(err, "invalid tenant_id claim") {
					t.Errorf("Verify of a bad token: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if err := v.fetch(context.Background(), false); err != nil {
				t.Errorf("refresh: %v", err)
			}
		}
	})
	wg.Wait()
}
