package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"phonesd/internal/auth"
)

// The token issuer the phonesd started by the checker trusts.
const (
	checkIssuer   = "phonescheck"
	checkAudience = "phonesd"
	tokenTTL      = 24 * time.Hour
)

// The tenants whose requests the ledger records, and the accounts they use.
// Accounts 1 and 2 of each tenant also get account-specific tokens.
var tenants = []string{"TN-check-a", "TN-check-b", "TN-check-c"}

const (
	accountsPerTenant = 6
	// boundAccounts is how many accounts of each tenant, from 1, have an
	// account-specific token.
	boundAccounts = 2
	// hostileTenant sends the hostile requests; it must never own a phone.
	hostileTenant = "TN-check-hostile"
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

// token returns a token of tenant: tenant-wide when account is 0, else
// specific to that account (the account_id claim).
func (iss *issuer) token(tenant string, account int64) (string, error) {
	return iss.key.Mint(auth.Claims{
		Issuer: checkIssuer, Audience: checkAudience, Subject: "checker",
		Tenant: tenant, Account: account, TTL: tokenTTL,
		Email: "checker@bank.test", Roles: []string{"crm-operator"}, Origin: "CHECK",
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

// tokenKey names a token: a tenant, and an account for an account-specific one.
type tokenKey struct {
	tenant  string
	account int64 // 0: tenant-wide
}

// tokenSet holds the tokens of every tenant, minted once per run.
type tokenSet map[tokenKey]string

// mintTokens mints a tenant-wide token per tenant (the hostile one included)
// and the account-specific tokens.
func mintTokens(iss *issuer) (tokenSet, error) {
	ts := tokenSet{}
	for _, tn := range append(slices.Clone(tenants), hostileTenant) {
		for a := int64(0); a <= boundAccounts; a++ {
			tok, err := iss.token(tn, a)
			if err != nil {
				return nil, err
			}
			ts[tokenKey{tn, a}] = tok
		}
	}
	return ts, nil
}
