package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestNewVerifier(t *testing.T) {
	k := keyring(t)
	keys := &jose.JSONWebKeySet{Keys: baseJWKS(k)}
	weakOnly := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.rsa1024.PublicKey, KeyID: "weak"}}}
	privateOnly := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.rsa, KeyID: "private"}}}

	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means valid
	}{
		{name: "https", cfg: Config{JWKSURL: "https://issuer.example/.well-known/jwks.json"}},
		{name: "http 127.0.0.1", cfg: Config{JWKSURL: "http://127.0.0.1:8080/jwks"}},
		{name: "http 127.1.2.3", cfg: Config{JWKSURL: "http://127.1.2.3/jwks"}},
		{name: "http localhost", cfg: Config{JWKSURL: "http://localhost:9000/jwks"}},
		{name: "http ::1", cfg: Config{JWKSURL: "http://[::1]:9000/jwks"}},
		{name: "static keys", cfg: Config{Keys: keys}},
		{name: "http non-loopback host", cfg: Config{JWKSURL: "http://issuer.example/jwks"}, wantErr: "http is allowed only for a loopback host"},
		{name: "http private address", cfg: Config{JWKSURL: "http://10.0.0.1/jwks"}, wantErr: "http is allowed only for a loopback host"},
		{name: "http localhost lookalike", cfg: Config{JWKSURL: "http://localhost.evil.example/jwks"}, wantErr: "http is allowed only for a loopback host"},
		{name: "other scheme", cfg: Config{JWKSURL: "ftp://issuer.example/jwks"}, wantErr: "scheme must be https"},
		{name: "relative url", cfg: Config{JWKSURL: "/jwks"}, wantErr: "missing host"},
		{name: "unparsable url", cfg: Config{JWKSURL: "https://[::1"}, wantErr: "not a valid URL"},
		{name: "neither url nor keys", cfg: Config{}, wantErr: "exactly one of JWKSURL and Keys"},
		{name: "both url and keys", cfg: Config{JWKSURL: "https://issuer.example/jwks", Keys: keys}, wantErr: "exactly one of JWKSURL and Keys"},
		{name: "keys all too weak", cfg: Config{Keys: weakOnly}, wantErr: "no usable public signing key"},
		{name: "keys private only", cfg: Config{Keys: privateOnly}, wantErr: "no usable public signing key"},
		{name: "missing issuer", cfg: Config{JWKSURL: "https://issuer.example/jwks", Issuer: "-"}, wantErr: "Issuer is required"},
		{name: "missing audience", cfg: Config{JWKSURL: "https://issuer.example/jwks", Audience: "-"}, wantErr: "Audience is required"},
		{name: "negative leeway", cfg: Config{JWKSURL: "https://issuer.example/jwks", Leeway: -time.Second}, wantErr: "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			// "-" marks the field a case leaves empty on purpose.
			switch cfg.Issuer {
			case "":
				cfg.Issuer = testIssuer
			case "-":
				cfg.Issuer = ""
			}
			switch cfg.Audience {
			case "":
				cfg.Audience = testAudience
			case "-":
				cfg.Audience = ""
			}
			v, err := NewVerifier(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewVerifier: got error %v; want nil", err)
				}
				if got, want := v.Ready(), cfg.Keys != nil; got != want {
					t.Errorf("Ready: got %v; want %v", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewVerifier: got error %v; want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunBecomesReady(t *testing.T) {
	k := keyring(t)
	tests := []struct {
		name     string
		failures int64
	}{
		{name: "first fetch succeeds", failures: 0},
		{name: "after failed fetches", failures: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
			srv.failFirst = tt.failures
			v, err := NewVerifier(Config{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience, Now: newFakeClock().Now})
			if err != nil {
				t.Fatalf("NewVerifier: %v", err)
			}
			if v.Ready() {
				t.Fatalf("Ready before Run: got true; want false")
			}

			v.retryBase = time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				v.Run(ctx)
			}()
			defer func() {
				cancel()
				<-done
			}()
			waitFor(t, "verifier ready", v.Ready)
			if got, want := srv.hits.Load(), tt.failures+1; got != want {
				t.Errorf("fetches: got %d; want %d", got, want)
			}
			token := sign(t, jose.ES256, k.p256, "p256", claims(nil))
			if _, err := v.Verify(context.Background(), token); err != nil {
				t.Errorf("Verify after ready: got error %v; want nil", err)
			}
		})
	}
}

func TestRunStopsWhileRetrying(t *testing.T) {
	srv := newJWKSServer(t, []byte("down"))
	srv.serve(http.StatusInternalServerError, []byte("down"))
	v, err := NewVerifier(Config{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
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
	waitFor(t, "retries", func() bool { return srv.hits.Load() >= 3 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if v.Ready() {
		t.Errorf("Ready: got true; want false")
	}
}

// TestUnknownKidRefetch: a token signed by a key the set does not hold
// fails at once, and starts a refetch of the set in the background, at most
// once per MinRefetchInterval; once it lands, the token verifies.
func TestUnknownKidRefetch(t *testing.T) {
	k := keyring(t)
	rotated := append(baseJWKS(k), jose.JSONWebKey{Key: &k.p384.PublicKey, KeyID: "rotated", Use: "sig"})
	rotatedToken := sign(t, jose.ES384, k.p384, "rotated", claims(nil))
	unknownToken := sign(t, jose.ES384, k.p384, "never-published", claims(nil))

	t.Run("rotated key found once the refetch lands", func(t *testing.T) {
		srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
		clock := newFakeClock()
		v := startVerifier(t, srv, clock)
		srv.serve(http.StatusOK, marshalJWKS(t, rotated))

		if _, err := v.Verify(context.Background(), rotatedToken); !isAuthError(err, "unknown token signing key") {
			t.Fatalf("Verify inside interval: got %v; want unknown key", err)
		}
		if got, want := srv.hits.Load(), int64(1); got != want {
			t.Fatalf("fetches inside interval: got %d; want %d", got, want)
		}

		clock.Advance(time.Minute)
		if _, err := v.Verify(context.Background(), rotatedToken); !isAuthError(err, "unknown token signing key") {
			t.Fatalf("Verify after interval: got %v; want unknown key, at once", err)
		}
		waitFor(t, "the refetched set", func() bool {
			_, err := v.Verify(context.Background(), rotatedToken)
			return err == nil
		})
		if got, want := srv.hits.Load(), int64(2); got != want {
			t.Errorf("fetches: got %d; want %d", got, want)
		}
		if _, err := v.Verify(context.Background(), unknownToken); !isAuthError(err, "unknown token signing key") {
			t.Errorf("Verify unknown kid: got %v; want unknown key", err)
		}
		if got, want := srv.hits.Load(), int64(2); got != want {
			t.Errorf("fetches after a second unknown kid inside the interval: got %d; want %d", got, want)
		}
	})

	t.Run("50 concurrent unknown kids: one refetch", func(t *testing.T) {
		srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
		clock := newFakeClock()
		v := startVerifier(t, srv, clock)
		// The key server holds its answer until all 50 are verified: had
		// it landed meanwhile, the later rotated-key tokens would pass.
		hold := make(chan struct{})
		srv.mu.Lock()
		srv.body, srv.hold = marshalJWKS(t, rotated), hold
		srv.mu.Unlock()
		clock.Advance(time.Minute)

		start := make(chan struct{})
		errs := make([]error, 50)
		var wg sync.WaitGroup
		for i := range errs {
			token := rotatedToken
			if i%2 == 1 {
				token = unknownToken
			}
			wg.Go(func() {
				<-start
				_, errs[i] = v.Verify(context.Background(), token)
			})
		}
		close(start)
		verified := make(chan struct{})
		go func() {
			wg.Wait()
			close(verified)
		}()
		select {
		case <-verified:
		case <-time.After(10 * time.Second):
			close(hold)
			t.Fatal("verifications did not finish while the key server held its answer: one waited for it")
		}
		for i, err := range errs {
			if !isAuthError(err, "unknown token signing key") {
				t.Errorf("request %d: got %v; want unknown key", i, err)
			}
		}
		close(hold)
		waitFor(t, "the refetched set", func() bool {
			_, err := v.Verify(context.Background(), rotatedToken)
			return err == nil
		})
		if got := srv.hits.Load() - 1; got != 1 {
			t.Errorf("refetches: got %d; want 1", got)
		}
	})

	t.Run("a slow key server holds no request", func(t *testing.T) {
		srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
		clock := newFakeClock()
		v := startVerifier(t, srv, clock)
		// The key server answers nothing until the verifications are done:
		// one that waited for it would never finish.
		hold := make(chan struct{})
		srv.mu.Lock()
		srv.hold = hold
		srv.mu.Unlock()
		defer close(hold)
		clock.Advance(time.Minute)
		known := sign(t, jose.ES256, k.p256, "p256", claims(nil))
		done := make(chan error, 1)
		go func() {
			for range 20 {
				if _, err := v.Verify(context.Background(), unknownToken); !isAuthError(err, "unknown token signing key") {
					done <- fmt.Errorf("Verify unknown kid: got %v; want unknown key", err)
					return
				}
				if _, err := v.Verify(context.Background(), known); err != nil {
					done <- fmt.Errorf("Verify known kid while the set is refetched: %v", err)
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("verifications did not finish while the key server held its answer: one waited for it")
		}
		waitFor(t, "the background refetch to reach the key server", func() bool { return srv.hits.Load() >= 2 })
		if got := srv.hits.Load(); got != 2 {
			t.Errorf("fetches: got %d; want 2 (the first, one refetch)", got)
		}
	})

	t.Run("static keys never fetch", func(t *testing.T) {
		v, err := NewVerifier(Config{
			Keys:     &jose.JSONWebKeySet{Keys: baseJWKS(k)},
			Issuer:   testIssuer,
			Audience: testAudience,
			Now:      newFakeClock().Now,
		})
		if err != nil {
			t.Fatalf("NewVerifier: %v", err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			v.Run(context.Background())
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Run with static keys did not return at once")
		}
		if _, err := v.Verify(context.Background(), unknownToken); !isAuthError(err, "unknown token signing key") {
			t.Errorf("Verify unknown kid: got %v; want unknown key", err)
		}
		if _, err := v.Verify(context.Background(), sign(t, jose.EdDSA, k.ed, "ed", claims(nil))); err != nil {
			t.Errorf("Verify known kid: got error %v; want nil", err)
		}
	})
}

func TestFailedRefreshKeepsKeySet(t *testing.T) {
	k := keyring(t)
	token := sign(t, jose.RS256, k.rsa, "rsa", claims(nil))
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{name: "server error", status: http.StatusInternalServerError, body: "oops"},
		{name: "garbage body", status: http.StatusOK, body: "<html>not json</html>"},
		{name: "empty key set", status: http.StatusOK, body: `{"keys":[]}`},
		{name: "only unusable keys", status: http.StatusOK, body: `{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
			v, err := NewVerifier(Config{
				JWKSURL:         srv.URL,
				Issuer:          testIssuer,
				Audience:        testAudience,
				RefreshInterval: time.Millisecond,
				Now:             newFakeClock().Now,
			})
			if err != nil {
				t.Fatalf("NewVerifier: %v", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				v.Run(ctx)
			}()
			defer func() {
				cancel()
				<-done
			}()
			waitFor(t, "verifier ready", v.Ready)

			srv.serve(tt.status, []byte(tt.body))
			seen := srv.hits.Load()
			waitFor(t, "failed refreshes", func() bool { return srv.hits.Load() >= seen+3 })

			if !v.Ready() {
				t.Errorf("Ready after failed refresh: got false; want true")
			}
			if _, err := v.Verify(context.Background(), token); err != nil {
				t.Errorf("Verify after failed refresh: got error %v; want nil", err)
			}
		})
	}
}

func TestParseKeySetSkipsUnsupportedKeys(t *testing.T) {
	k := keyring(t)
	v, err := NewVerifier(Config{JWKSURL: "https://issuer.example/jwks", Issuer: testIssuer, Audience: testAudience})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	good := string(marshalJWKS(t, []jose.JSONWebKey{{Key: &k.p256.PublicKey, KeyID: "p256"}}))
	body := strings.Replace(good, `"keys":[`, `"keys":[{"kty":"OKP","crv":"X25519","kid":"x","x":"AAAA"},{"kty":"RSA","kid":"hs","alg":"HS256","n":"AQAB","e":"AQAB"},`, 1)
	ks, err := v.parseKeySet([]byte(body))
	if err != nil {
		t.Fatalf("parseKeySet: got error %v; want nil", err)
	}
	if got, want := len(ks.byKID), 1; got != want {
		t.Errorf("usable keys: got %d; want %d", got, want)
	}
	if _, ok := ks.byKID["p256"]; !ok {
		t.Errorf("key p256: got missing; want present")
	}
}

func isAuthError(err error, msg string) bool {
	var verr *Error
	return errors.As(err, &verr) && verr.Message == msg
}

func TestWeakRSAKeyIsLogged(t *testing.T) {
	k := keyring(t)
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	_, err := NewVerifier(Config{
		Keys:     &jose.JSONWebKeySet{Keys: baseJWKS(k)},
		Issuer:   testIssuer,
		Audience: testAudience,
		Logger:   logger,
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	if got, want := buf.String(), "rsa key of 1024 bits is under 2048"; !strings.Contains(got, want) || !strings.Contains(got, "kid=weak") {
		t.Errorf("log: got %q; want a warning naming kid=weak with %q", got, want)
	}
}

func TestKeySetAge(t *testing.T) {
	k := keyring(t)
	if v, err := NewVerifier(Config{Keys: &jose.JSONWebKeySet{Keys: baseJWKS(k)}, Issuer: testIssuer, Audience: testAudience}); err != nil {
		t.Fatal(err)
	} else if age, ok := v.KeySetAge(); ok {
		t.Errorf("KeySetAge of fixed keys: %v, true; want false: they never age", age)
	}

	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	clock := newFakeClock()
	v := startVerifier(t, srv, clock)
	if age, ok := v.KeySetAge(); !ok || age != 0 {
		t.Fatalf("KeySetAge after the first fetch: %v, %v; want 0, true", age, ok)
	}
	// The key set's server fails: the last good set stays, and ages.
	srv.serve(http.StatusInternalServerError, []byte("down"))
	clock.Advance(25 * time.Hour)
	if err := v.fetch(context.Background(), false); err == nil {
		t.Fatal("fetch from a failing server: got nil error; want one")
	}
	if age, ok := v.KeySetAge(); !ok || age != 25*time.Hour {
		t.Errorf("KeySetAge after a failed refresh: %v, %v; want 25h, true", age, ok)
	}
	srv.serve(http.StatusOK, marshalJWKS(t, baseJWKS(k)))
	if err := v.fetch(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if age, ok := v.KeySetAge(); !ok || age != 0 {
		t.Errorf("KeySetAge after a refresh: %v, %v; want 0, true", age, ok)
	}
}
