package issuer

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
)

// TestIssuer serves the key set of a key kept in a file and checks that
// phonesd's verifier, pointed at it, accepts the tokens the issuer signs,
// also after the issuer restarts on the same file.
func TestIssuer(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "data", KeyFile)
	var first string // a token of the first round, still good in the second
	for round := range 2 {
		key, err := auth.LoadOrCreateKeyFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		is, err := Listen(key, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- is.Serve(ctx) }()

		tok, err := is.Mint(auth.Claims{Issuer: Name, Audience: Audience, Subject: "s", Tenant: "TN-1", Account: 7, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		v, err := auth.NewVerifier(auth.Config{JWKSURL: is.JWKSURL(), Issuer: Name, Audience: Audience})
		if err != nil {
			t.Fatalf("round %d: NewVerifier: %v", round, err)
		}
		runCtx, stopVerifier := context.WithCancel(context.Background())
		go v.Run(runCtx)
		for deadline := time.Now().Add(5 * time.Second); !v.Ready(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the key set did not load within 5s", round)
			}
		}
		if round == 0 {
			first = tok
		}
		for _, tok := range []string{tok, first} {
			if got, err := v.Verify(context.Background(), tok); err != nil || got.Tenant != "TN-1" || got.Account != 7 {
				t.Errorf("round %d: Verify: %+v, %v; want tenant TN-1, account 7", round, got, err)
			}
		}
		stopVerifier()
		stop()
		if err := <-served; err != nil {
			t.Errorf("round %d: Serve after its context ended: %v; want nil", round, err)
		}
	}
}
