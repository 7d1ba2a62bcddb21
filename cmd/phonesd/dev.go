package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
)

// devTenant is the tenant of the token printed at a development start.
const devTenant = "TN-dev"

// announceDev prints, outside the structured log, that this is development
// mode, with a token and a request that work against this very process.
func announceDev(w io.Writer, key *auth.DevKey, addr string) error {
	token, err := key.Mint(auth.Claims{
		Issuer:   auth.DevIssuer,
		Audience: auth.DevAudience,
		Subject:  "developer",
		Tenant:   devTenant,
		Roles:    []string{"developer"},
		TTL:      24 * time.Hour,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, `
================================================================
 phonesd is in DEVELOPMENT MODE: it trusts tokens signed by the
 key in its data directory. Set PHONES_JWKS_URL for production.
================================================================
A token for tenant %s, valid for 24 hours:

export TOKEN=%s

curl -sS -X POST http://%s/accounts/v1/accounts/123/phones \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"number": "91234-5678", "type": "MOBILE", "area_code": 11}'

More tokens: go run ./cmd/phonesd token -tenant TN-dev -account 123

`, devTenant, token, addr)
	return err
}

// mintCommand signs a development token with the data directory's key.
func mintCommand(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("phonesd token", flag.ContinueOnError)
	claims := claimFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if !cfg.dev() {
		return fmt.Errorf("token: minting works only in development mode (no PHONES_JWKS_URL)")
	}
	key, err := auth.LoadOrCreateDevKey(cfg.dataDir)
	if err != nil {
		return fmt.Errorf("development key: %w", err)
	}
	c := claims()
	c.Issuer, c.Audience = auth.DevIssuer, auth.DevAudience
	return printToken(stdout, key, c)
}

// claimFlags defines on fs the flags of a command that prints a token, and
// returns the claims they give once fs is parsed.
func claimFlags(fs *flag.FlagSet) func() auth.Claims {
	tenant := fs.String("tenant", devTenant, "tenant_id claim")
	account := fs.Int64("account", 0, "account_id claim: the token may touch only this account (0: any account of the tenant)")
	roles := fs.String("roles", "developer", "comma-separated roles claim")
	email := fs.String("email", "", "email claim")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	return func() auth.Claims {
		var roleList []string
		for _, r := range strings.Split(*roles, ",") {
			if r = strings.TrimSpace(r); r != "" {
				roleList = append(roleList, r)
			}
		}
		return auth.Claims{Subject: "developer", Tenant: *tenant, Account: *account, Roles: roleList, Email: *email, TTL: *ttl}
	}
}

// printToken signs c with key and prints the token on a line of its own.
func printToken(w io.Writer, key *auth.DevKey, c auth.Claims) error {
	token, err := key.Mint(c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, token)
	return err
}
