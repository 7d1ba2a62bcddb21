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
// The token lives ttl, the longest that phonesd accepts.
func announceDev(w io.Writer, key *auth.DevKey, addr string, ttl time.Duration) error {
	token, err := key.Mint(auth.Claims{
		Issuer:   auth.DevIssuer,
		Audience: auth.DevAudience,
		Subject:  "developer",
		Tenant:   devTenant,
		Roles:    []string{"developer"},
		TTL:      ttl,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, `
================================================================
 phonesd is in DEVELOPMENT MODE: it trusts tokens signed by the
 key in its data directory. Set PHONES_JWKS_URL for production.
================================================================
A token for tenant %s, valid for %s:

export TOKEN=%s

curl -sS -X POST http://%s/accounts/v1/accounts/123/phones \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"number": "91234-5678", "type": "MOBILE", "area_code": 11}'

More tokens: go run ./cmd/phonesd token -tenant TN-dev -account 123

`, devTenant, durationText(ttl), token, addr)
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
	// Development mode refuses PHONES_JWT_MAX_TTL set: the limit is its
	// default.
	c, err := claims(cfg.maxTTL)
	if err != nil {
		return err
	}
	key, err := auth.LoadOrCreateDevKey(cfg.dataDir)
	if err != nil {
		return fmt.Errorf("development key: %w", err)
	}
	c.Issuer, c.Audience = auth.DevIssuer, auth.DevAudience
	return printToken(stdout, key, c)
}

// claimFlags defines on fs the flags of a command that prints a token, and
// returns the claims they give once fs is parsed, or an error for a
// lifetime phonesd would refuse the token for when it accepts at most
// maxTTL (0: any).
func claimFlags(fs *flag.FlagSet) func(maxTTL time.Duration) (auth.Claims, error) {
	tenant := fs.String("tenant", devTenant, "tenant_id claim")
	account := fs.Int64("account", 0, "account_id claim: the token may touch only this account (0: any account of the tenant)")
	roles := fs.String("roles", "developer", "comma-separated roles claim")
	email := fs.String("email", "", "email claim")
	ttl := fs.Duration("ttl", auth.DefaultTTL, "lifetime: positive, and at most PHONES_JWT_MAX_TTL, the longest phonesd accepts")
	return func(maxTTL time.Duration) (auth.Claims, error) {
		if err := checkTokenTTL(*ttl, maxTTL); err != nil {
			return auth.Claims{}, err
		}
		var roleList []string
		for _, r := range strings.Split(*roles, ",") {
			if r = strings.TrimSpace(r); r != "" {
				roleList = append(roleList, r)
			}
		}
		return auth.Claims{Subject: "developer", Tenant: *tenant, Account: *account, Roles: roleList, Email: *email, TTL: *ttl}, nil
	}
}

// checkTokenTTL refuses a lifetime whose token phonesd would refuse: one
// that is not positive, born expired (and 0 would leave the lifetime to a
// default the user did not ask for), or one longer than maxTTL (0: any).
func checkTokenTTL(ttl, maxTTL time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("-ttl: want a positive lifetime such as %s, got %s", durationText(auth.DefaultTTL), durationText(ttl))
	}
	if maxTTL > 0 && ttl > maxTTL {
		return fmt.Errorf("-ttl: %s is longer than phonesd accepts: PHONES_JWT_MAX_TTL is %s", durationText(ttl), durationText(maxTTL))
	}
	return nil
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
