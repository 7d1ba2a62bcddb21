package main

import (
	"time"

	"github.com/phonesd/phonesd/internal/auth"
	"github.com/phonesd/phonesd/internal/testkit/idp"
)

// The token issuer the phonesd started by the bench trusts.
const (
	benchIssuer   = "phonesbench"
	benchAudience = "phonesd"
	benchTenant   = "TN-bench"
)

// benchToken returns a tenant-wide token of benchTenant for subject sub.
func benchToken(p *idp.Provider, sub string, ttl time.Duration) (string, error) {
	return p.Mint(auth.Claims{
		Issuer: benchIssuer, Audience: benchAudience, Subject: sub,
		Tenant: benchTenant, Origin: "API", TTL: ttl,
	})
}
