package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/issuer"
)

// TestIssuerCommand runs phonesd issuer as a user would, then phonesd in
// production mode trusting it, and creates phones with the token the
// issuer printed and one from phonesd issuer token.
func TestIssuerCommand(t *testing.T) {
	issuerAddr := freeAddr(t)
	issuerEnv := map[string]string{"PHONES_DATA_DIR": t.TempDir()}
	ctx, stop := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"phonesd", "issuer", "-addr", issuerAddr}, issuerEnv, out, &bytes.Buffer{})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("phonesd issuer returned %v after its context ended; want nil", err)
		}
	})
	printed := regexp.MustCompile(`(?m)^export TOKEN=(\S+)$`)
	deadline := time.Now().Add(10 * time.Second)
	for !printed.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("phonesd issuer printed no token after 10s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	jwksURL := "http://" + issuerAddr + issuer.JWKSPath
	for _, want := range []string{"PHONES_JWKS_URL=" + jwksURL, "PHONES_JWT_ISSUER=" + issuer.Name, "PHONES_JWT_AUDIENCE=" + issuer.Audience} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("phonesd issuer did not print %s:\n%s", want, out.String())
		}
	}

	s := startWith(t, map[string]string{
		"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir(),
		"PHONES_JWKS_URL": jwksURL, "PHONES_JWT_ISSUER": issuer.Name, "PHONES_JWT_AUDIENCE": issuer.Audience,
	})
	s.token = printed.FindStringSubmatch(out.String())[1]
	createdID(t, s.create(123, okBody))

	var minted bytes.Buffer
	if err := run(context.Background(), []string{"phonesd", "issuer", "token", "-tenant", "TN-1", "-account", "7"}, issuerEnv, &minted, &bytes.Buffer{}); err != nil {
		t.Fatalf("phonesd issuer token: %v", err)
	}
	s.token = strings.TrimSpace(minted.String())
	createdID(t, s.create(7, okBody))
	if r := s.create(8, okBody); r.status != http.StatusForbidden {
		t.Errorf("the account-7 token on account 8: status %d; want 403", r.status)
	}
}
