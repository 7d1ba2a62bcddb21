package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestTokenLifetime: phonesd token and phonesd issuer token print a token
// only for a lifetime phonesd accepts, positive and at most
// PHONES_JWT_MAX_TTL, and the longest they print is accepted.
func TestTokenLifetime(t *testing.T) {
	defaults, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	longest := defaults.maxTTL
	mint := func(t *testing.T, env map[string]string, args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"phonesd"}, args...), env, &out, &bytes.Buffer{})
		if err != nil && out.Len() > 0 {
			t.Errorf("phonesd %s failed (%v) yet printed %q", strings.Join(args, " "), err, out.String())
		}
		return strings.TrimSpace(out.String()), err
	}
	refused := []string{"0", "-1h", (longest + time.Second).String()}

	t.Run("development mode", func(t *testing.T) {
		vars := map[string]string{"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir()}
		for _, ttl := range refused {
			if _, err := mint(t, vars, "token", "-ttl", ttl); err == nil || !strings.HasPrefix(err.Error(), "-ttl: ") {
				t.Errorf("phonesd token -ttl %s: %v; want an error about -ttl", ttl, err)
			}
		}
		token, err := mint(t, vars, "token", "-ttl", longest.String(), "-account", "5")
		if err != nil {
			t.Fatalf("phonesd token -ttl %s: %v", longest, err)
		}
		s := startWith(t, vars)
		s.token = token
		createdID(t, s.create(5, okBody))
	})

	t.Run("issuer", func(t *testing.T) {
		env := map[string]string{"PHONES_DATA_DIR": t.TempDir()}
		for _, ttl := range refused {
			if _, err := mint(t, env, "issuer", "token", "-ttl", ttl); err == nil || !strings.HasPrefix(err.Error(), "-ttl: ") {
				t.Errorf("phonesd issuer token -ttl %s: %v; want an error about -ttl", ttl, err)
			}
		}
		if _, err := mint(t, env, "issuer", "token", "-ttl", longest.String()); err != nil {
			t.Errorf("phonesd issuer token -ttl %s: %v", longest, err)
		}
		// Read as phonesd reads it, for a phonesd that accepts more.
		env["PHONES_JWT_MAX_TTL"] = (2 * longest).String()
		if _, err := mint(t, env, "issuer", "token", "-ttl", (2 * longest).String()); err != nil {
			t.Errorf("phonesd issuer token -ttl %s with PHONES_JWT_MAX_TTL=%s: %v", 2*longest, 2*longest, err)
		}
	})
}
