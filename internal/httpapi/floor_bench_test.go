package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/phonesd/phonesd/internal/auth"
)

// BenchmarkFloor serves the request phonesbench's floor sends, refused with
// a 400 before storage, through the whole handler with phonesd's settings:
// cached tokens, the limits on, a JSON log line.
func BenchmarkFloor(b *testing.B) {
	srv, key := newHandlerWith(b, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return a }}))
		c.RateLimit, c.RateBurst, c.MaxInFlight, c.MaxInFlightPerTenant = 1e9, 1e9, 1024, 512
	})
	v, err := auth.NewVerifier(auth.Config{Keys: key.KeySet(), Issuer: auth.DevIssuer, Audience: auth.DevAudience, CacheSize: 1024})
	if err != nil {
		b.Fatal(err)
	}
	srv.verifier = v
	token := mint(b, key, auth.Claims{Tenant: "TN-1"})
	body := `{"number":"5551234","type":"INVALID","area_code":11,"country_code":55}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/accounts/v1/accounts/7/phones", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
