package main

import (
	"slices"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/testkit/idp"
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

// token returns a token of tenant from p: tenant-wide when account is 0,
// else specific to that account (the account_id claim).
func token(p *idp.Provider, tenant string, account int64) (string, error) {
	return p.Mint(auth.Claims{
		Issuer: checkIssuer, Audience: checkAudience, Subject: "checker",
		Tenant: tenant, Account: account, TTL: tokenTTL,
		Email: "checker@bank.test", Roles: []string{"crm-operator"}, Origin: "CHECK",
	})
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
func mintTokens(p *idp.Provider) (tokenSet, error) {
	ts := tokenSet{}
	for _, tn := range append(slices.Clone(tenants), hostileTenant) {
		for a := int64(0); a <= boundAccounts; a++ {
			tok, err := token(p, tn, a)
			if err != nil {
				return nil, err
			}
			ts[tokenKey{tn, a}] = tok
		}
	}
	return ts, nil
}
