// Package issuer is a token issuer for running phonesd's production mode
// on one machine: it serves the key set of a signing key over HTTP, as an
// identity provider would for PHONES_JWKS_URL, and signs RS256 tokens with
// that key. Whoever can read the key can mint tokens; the key set it serves
// is public.
package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
)

// Name and Audience are the iss and aud of the tokens of `phonesd issuer`,
// for PHONES_JWT_ISSUER and PHONES_JWT_AUDIENCE; KeyFile is its key's file
// in the data directory.
const (
	Name     = "phonesd-issuer"
	Audience = "phonesd"
	KeyFile  = "issuer-signing-key.pem"
)

// JWKSPath is where the key set is served.
const JWKSPath = "/jwks.json"

// Issuer is a key and a listener that serves its key set.
type Issuer struct {
	key *auth.DevKey
	ln  net.Listener
	srv *http.Server
}

// KeySetHandler serves the public key set of key at JWKSPath.
func KeySetHandler(key *auth.DevKey) (http.Handler, error) {
	body, err := json.Marshal(key.KeySet())
	if err != nil {
		return nil, fmt.Errorf("encode key set: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	return mux, nil
}

// Listen binds addr ("127.0.0.1:0" for a free port) for the key set of key;
// Serve serves it.
func Listen(key *auth.DevKey, addr string) (*Issuer, error) {
	h, err := KeySetHandler(key)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for the key set: %w", err)
	}
	return &Issuer{key: key, ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// JWKSURL is the URL of the key set, for PHONES_JWKS_URL.
func (i *Issuer) JWKSURL() string {
	return "http://" + i.ln.Addr().String() + JWKSPath
}

// Serve serves the key set until ctx ends, then stops and returns nil; it
// returns the error that stopped it otherwise.
func (i *Issuer) Serve(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- i.srv.Serve(i.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve the key set: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := i.srv.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	return err
}

// Mint signs a token with c's claims.
func (i *Issuer) Mint(c auth.Claims) (string, error) {
	return i.key.Mint(c)
}
