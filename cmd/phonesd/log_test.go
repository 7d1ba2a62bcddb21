package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLogWritesDurationsAsText starts phonesd against a key set that is
// down, and reads the retry delay it logs: "1s", not 1000000000.
func TestLogWritesDurationsAsText(t *testing.T) {
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(jwks.Close)
	s := launch(t, map[string]string{
		"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir(),
		"PHONES_JWKS_URL": jwks.URL, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		for line := range strings.SplitSeq(s.logs.String(), "\n") {
			var entry struct {
				Msg     string `json:"msg"`
				RetryIn any    `json:"retry_in"`
			}
			if json.Unmarshal([]byte(line), &entry) != nil || entry.RetryIn == nil {
				continue
			}
			text, ok := entry.RetryIn.(string)
			if d, err := time.ParseDuration(text); !ok || err != nil || d <= 0 {
				t.Fatalf("%q logs retry_in %v; want a duration such as \"1s\"", entry.Msg, entry.RetryIn)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retry_in logged after 10s:\n%s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
