package idp

import (
	"context"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
)

// TestTokensVerify checks that phonesd's own verifier, pointed at the
// served key set, accepts a token the provider signs.
func TestTokensVerify(t *testing.T) {
	p, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	tok, err := p.Mint(auth.Claims{Issuer: "idp-test", Audience: "phonesd", Subject: "s", Tenant: "TN-1", Account: 7, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{JWKSURL: p.JWKSURL, Issuer: "idp-test", Audience: "phonesd"})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)
	for deadline := time.Now().Add(5 * time.Second); !v.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the key set did not load within 5s")
		}
	}
	got, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Tenant != "TN-1" || got.Account != 7 {
		t.Errorf("principal %+v; want tenant TN-1, account 7", got)
	}
}
