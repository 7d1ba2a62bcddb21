// Package idp is an identity provider on loopback for phonesd's own tools
// (the benchmark and the fault checker): a fresh RSA-2048 key whose key set
// it serves at /jwks.json, as a real provider would, and the RS256 tokens
// it signs with that key.
package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"phonesd/internal/auth"
)

// Provider serves its key set until Close.
type Provider struct {
	key *auth.DevKey
	// JWKSURL is where the key set is served, for PHONES_JWKS_URL.
	JWKSURL string
	srv     *http.Server
	served  chan error
}

// Start generates the key and starts serving its key set on a free
// loopback port.
func Start() (*Provider, error) {
	key, err := auth.NewDevKey()
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(key.KeySet())
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
	p := &Provider{
		key:     key,
		JWKSURL: "http://" + ln.Addr().String() + "/jwks.json",
		srv:     &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		served:  make(chan error, 1),
	}
	go func() { p.served <- p.srv.Serve(ln) }()
	return p, nil
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
