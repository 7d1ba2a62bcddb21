package main

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

// The token issuer the phonesd started by the bench trusts.
const (
	benchIssuer   = "phonesbench"
	benchAudience = "phonesd"
	benchTenant   = "TN-bench"
)

// issuer signs RS256 tokens with a fresh RSA-2048 key and serves its key set
// on loopback, as an identity provider would.
type issuer struct {
	key     *auth.DevKey
	jwksURL string
	srv     *http.Server
	served  chan error
}

// newIssuer generates the key and starts serving /jwks.json.
func newIssuer() (*issuer, error) {
	key, err := auth.NewDevKey()
	if err != nil {
		return nil, err
	}
	set := key.KeySet()
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
	return iss.key.Mint(auth.Claims{
		Issuer: benchIssuer, Audience: benchAudience, Subject: sub,
		Tenant: benchTenant, Origin: "API", TTL: ttl,
	})
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
