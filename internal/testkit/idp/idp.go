// Package idp is an identity provider on loopback for phonesd's own tools
// (the benchmark and the fault checker): a fresh RSA-2048 key, kept only in
// memory, whose key set it serves at /jwks.json with internal/issuer's
// handler, as a real provider would, and the RS256 tokens it signs with
// that key.
package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/issuer"
)

// Provider serves its key set until Close.
type Provider struct {
	key *auth.DevKey
	// JWKSURL is where the key set is served, for PHONES_JWKS_URL.
	JWKSURL string
	srv     *http.Server
	served  chan error
	delay   atomic.Int64 // nanoseconds each answer waits, to play a slow provider
}

// Start generates the key and starts serving its key set on a free
// loopback port.
func Start() (*Provider, error) {
	key, err := auth.NewDevKey()
	if err != nil {
		return nil, err
	}
	keySet, err := issuer.KeySetHandler(key)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the key set: %w", err)
	}
	p := &Provider{
		key:     key,
		JWKSURL: "http://" + ln.Addr().String() + issuer.JWKSPath,
		served:  make(chan error, 1),
	}
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Duration(p.delay.Load())):
		case <-r.Context().Done():
			return
		}
		keySet.ServeHTTP(w, r)
	})
	p.srv = &http.Server{Handler: slow, ReadHeaderTimeout: 5 * time.Second}
	go func() { p.served <- p.srv.Serve(ln) }()
	return p, nil
}

// SetDelay makes every answer of the key set wait d from now on, as a
// provider under strain would; 0 answers at once again.
func (p *Provider) SetDelay(d time.Duration) {
	p.delay.Store(int64(d))
}

// Mint signs a token with c's claims.
func (p *Provider) Mint(c auth.Claims) (string, error) {
	return p.key.Mint(c)
}

// Close stops serving the key set.
func (p *Provider) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	if serveErr := <-p.served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

// Signer signs tokens with a key of its own that no key set publishes, as
// a forger would, under any key id.
type Signer struct {
	key *ecdsa.PrivateKey
}

// NewSigner generates the forger's key.
func NewSigner() (*Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate a signing key: %w", err)
	}
	return &Signer{key: key}, nil
}

// Mint signs an ES256 token with c's issuer, audience, tenant and lifetime
// under kid.
func (s *Signer) Mint(kid string, c auth.Claims) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}
	now := time.Now()
	claims := map[string]any{
		"iss": c.Issuer, "aud": c.Audience, "tenant_id": c.Tenant,
		"iat": now.Unix(), "exp": now.Add(c.TTL).Unix(),
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}
