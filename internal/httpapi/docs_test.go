package httpapi

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestDocsPageServesItself checks what the browser test in cmd/phonesd
// cannot see without Chromium: the page holds Redoc inline, its policy
// allows exactly its own scripts, and a reload with the ETag costs nothing.
// That the page renders the contract is checked there, in a real browser.
func TestDocsPageServesItself(t *testing.T) {
	h := docsPage()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, "/docs", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /docs: %d %q; want 200 text/html", rec.Code, rec.Header().Get("Content-Type"))
	}
	// An inline script ends at the first </script, wherever it stands.
	if strings.Contains(strings.ToLower(redocBundle), "</script") {
		t.Fatal("the Redoc bundle holds </script: it cannot be inlined as it is")
	}
	scripts := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(rec.Body.String(), -1)
	csp := rec.Header().Get("Content-Security-Policy")
	if len(scripts) != 2 {
		t.Fatalf("%d inline scripts; want Redoc and its start", len(scripts))
	}
	for _, s := range scripts {
		if !strings.Contains(csp, scriptHash(s[1])) {
			t.Errorf("Content-Security-Policy %q does not allow the script starting %.60q", csp, s[1])
		}
	}
	for _, want := range []string{"default-src 'none'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q; want %s", csp, want)
		}
	}

	req := httptest.NewRequest(http.MethodGet, "/docs", nil)
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	again := httptest.NewRecorder()
	h(again, req)
	if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Errorf("GET /docs with its ETag: %d and %d bytes; want 304 and none", again.Code, again.Body.Len())
	}
}
