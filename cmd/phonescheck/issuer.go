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
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The token issuer the phonesd started by the checker trusts.
const (
	checkIssuer   = "phonescheck"
	checkAudience = "phonesd"
	checkKeyID    = "phonescheck-1"
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
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: checkKeyID, Algorithm: string(jose.RS256), Use: "sig"}}}
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
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: iss.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", checkKeyID))
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}
	now := time.Now()
	claims := map[string]any{
		"iss":       checkIssuer,
		"aud":       checkAudience,
		"sub":       "checker",
		"iat":       now.Unix(),
		"exp":       now.Add(tokenTTL).Unix(),
		"tenant_id": tenant,
		"email":     "checker@bank.test",
		"roles":     []string{"crm-operator"},
		"origin":    "CHECK",
	}
	if account != 0 {
		claims["account_id"] = account
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
