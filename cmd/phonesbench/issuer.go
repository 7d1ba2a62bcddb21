package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The token issuer the phonesd started by the bench trusts.
const (
	benchIssuer   = "phonesbench"
	benchAudience = "phonesd"
	benchTenant   = "TN-bench"
	benchKeyID    = "phonesbench-1"
)

// issuer signs RS256 tokens with a fresh RSA-2048 key and serves its key set
// on loopback, as an identity provider would.
type issuer struct {
	key     *rsa.PrivateKey
	jwksURL string
	srv     *http.Server
	served  chan error
}

// newIssuer generates the key and starts serving /jwks.json.
func newIssuer() (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: benchKeyID, Algorithm: string(jose.RS256), Use: "sig"}}}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encode key set: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the key set: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	iss := &issuer{
		key:     key,
		jwksURL: "http://" + ln.Addr().String() + "/jwks.json",
		srv:     &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		served:  make(chan error, 1),
	}
	go func() { iss.served <- iss.srv.Serve(ln) }()
	return iss, nil
}

// token returns a tenant-wide token of benchTenant for subject sub.
func (iss *issuer) token(sub string, ttl time.Duration) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: iss.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", benchKeyID))
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}
	now := time.Now()
	claims := map[string]any{
		"iss":       benchIssuer,
		"aud":       benchAudience,
		"sub":       sub,
		"iat":       now.Unix(),
		"exp":       now.Add(ttl).Unix(),
		"tenant_id": benchTenant,
		"origin":    "API",
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// Close stops serving the key set.
func (iss *issuer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := iss.srv.Shutdown(ctx)
	if serveErr := <-iss.served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}
