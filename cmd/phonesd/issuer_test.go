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
// production mode trusting it, and creates phones with tokens of phonesd
// issuer token, the way the issuer's output tells. That output holds no
// token: it often ends up in a log.
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
	tokenCommand := regexp.MustCompile(`(?m)^  phonesd (issuer token .*?)\s+\(-h: flags\)$`)
	deadline := time.Now().Add(10 * time.Second)
	for !tokenCommand.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("phonesd issuer printed no token command after 10s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	jwksURL := "http://" + issuerAddr + issuer.JWKSPath
	for _, want := range []string{"PHONES_JWKS_URL=" + jwksURL, "PHONES_JWT_ISSUER=" + issuer.Name, "PHONES_JWT_AUDIENCE=" + issuer.Audience} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("phonesd issuer did not print %s:\n%s", want, out.String())
		}
	}
	// A JWT's header is base64url JSON: it starts with "eyJ".
	if strings.Contains(out.String(), "eyJ") {
		t.Errorf("phonesd issuer printed a token:\n%s", out.String())
	}

	s := startWith(t, map[string]string{
		"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir(),
		"PHONES_JWKS_URL": jwksURL, "PHONES_JWT_ISSUER": issuer.Name, "PHONES_JWT_AUDIENCE": issuer.Audience,
	})
	var minted bytes.Buffer
	printed := strings.Fields(tokenCommand.FindStringSubmatch(out.String())[1])
	if err := run(context.Background(), append([]string{"phonesd"}, printed...), issuerEnv, &minted, &bytes.Buffer{}); err != nil {
		t.Fatalf("phonesd %s: %v", strings.Join(printed, " "), err)
	}
	s.token = strings.TrimSpace(minted.String())
	createdID(t, s.create(123, okBody))

	minted.Reset()
	if err := run(context.Background(), []string{"phonesd", "issuer", "token", "-tenant", "TN-1", "-account", "7"}, issuerEnv, &minted, &bytes.Buffer{}); err != nil {
		t.Fatalf("phonesd issuer token: %v", err)
	}
	s.token = strings.TrimSpace(minted.String())
	createdID(t, s.create(7, okBody))
	if r := s.create(8, okBody); r.status != http.StatusForbidden {
		t.Errorf("the account-7 token on account 8: status %d; want 403", r.status)
	}
}
