package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/phonesd/phonesd/api"
)

// TestDocsPageServesItself checks what the browser test in cmd/phonesd
// cannot see without Chromium: the page holds Redoc inline, its policy
// allows exactly its own scripts, and a reload with the ETag costs nothing.
// That the page renders the contract is checked there, in a real browser.
func TestDocsPageServesItself(t *testing.T) {
	h, err := docsPage(api.Spec, eventSpecJSON(t))
	if err != nil {
		t.Fatal(err)
	}
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

func eventSpecJSON(tb testing.TB) []byte {
	tb.Helper()
	b, err := api.AsyncAPIJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestDocumentsAreTheContracts: each document is served byte for byte as
// built into the binary, with its media type, and again for nothing with
// its ETag.
func TestDocumentsAreTheContracts(t *testing.T) {
	s := newTestServer(t)
	for _, tc := range []struct {
		path, contentType string
		want              []byte
	}{
		{"/openapi.json", "application/json", api.Spec},
		{"/asyncapi.yaml", "application/yaml", api.AsyncAPI},
		{"/asyncapi.json", "application/json", eventSpecJSON(t)},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != tc.contentType {
			t.Errorf("GET %s: %d %q; want 200 %s", tc.path, rec.Code, rec.Header().Get("Content-Type"), tc.contentType)
		}
		if !bytes.Equal(rec.Body.Bytes(), tc.want) {
			t.Errorf("GET %s: %d bytes, not the %d of the document", tc.path, rec.Body.Len(), len(tc.want))
		}
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
		again := httptest.NewRecorder()
		s.ServeHTTP(again, req)
		if again.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d; want 304", tc.path, again.Code)
		}
	}
}

// TestDocsShowTheEvents reads the document /docs renders: the contract's
// operations as they are, and a section of the events that draws, from the
// event contract, every message's headers and payload of every channel.
func TestDocsShowTheEvents(t *testing.T) {
	events := eventSpecJSON(t)
	b, err := docsDocument(api.Spec, events)
	if err != nil {
		t.Fatal(err)
	}
	var got, spec, ev struct {
		Paths      json.RawMessage `json:"paths"`
		Tags       []struct{ Name, Description string }
		Channels   map[string]struct{ Messages map[string]ref }
		Components struct {
			Schemas  map[string]json.RawMessage
			Messages map[string]struct{ Headers, Payload *ref }
		}
	}
	for _, d := range []struct {
		b   []byte
		out any
	}{{b, &got}, {api.Spec, &spec}, {events, &ev}} {
		if err := json.Unmarshal(d.b, d.out); err != nil {
			t.Fatal(err)
		}
	}
	// Compacted and escaped for HTML, as the page carries it, but in the
	// same order: Redoc shows operations and properties in the order written.
	if !bytes.Equal(got.Paths, asOnPage(t, spec.Paths)) {
		t.Error("the operations on /docs differ from the contract's")
	}
	for name := range ev.Components.Schemas {
		if !bytes.Equal(got.Components.Schemas[name], asOnPage(t, ev.Components.Schemas[name])) {
			t.Errorf("schema %s on /docs differs from the event contract's", name)
		}
	}
	if n := len(got.Tags); n == 0 || got.Tags[n-1].Name != eventsTag {
		t.Fatalf("tags %v; want the contract's, then %s", got.Tags, eventsTag)
	}
	section := got.Tags[len(got.Tags)-1].Description
	for channel, c := range ev.Channels {
		for _, m := range c.Messages {
			msg := ev.Components.Messages[m.name()]
			for _, r := range []*ref{msg.Headers, msg.Payload} {
				if r == nil {
					continue
				}
				if want := `<SchemaDefinition schemaRef="#/components/schemas/` + r.name() + `" />`; !strings.Contains(section, want) {
					t.Errorf("channel %s: %s not drawn in the events section", channel, r.name())
				}
			}
		}
	}
	for _, link := range []string{"(asyncapi.yaml)", "(asyncapi.json)"} {
		if !strings.Contains(section, link) {
			t.Errorf("no link %s in the events section", link)
		}
	}

	// A schema of the events must not replace one of the contract's.
	clash := bytes.Replace(events, []byte(`"AuditedPhone":`), []byte(`"Phone":`), 1)
	if _, err := docsDocument(api.Spec, clash); err == nil || !strings.Contains(err.Error(), "schema Phone") {
		t.Errorf("events with a schema named Phone: %v; want an error naming it", err)
	}
}

// asOnPage is a JSON value as docsDocument writes it: compact, escaped
// for HTML.
func asOnPage(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var compact, escaped bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		t.Fatal(err)
	}
	json.HTMLEscape(&escaped, compact.Bytes())
	return escaped.Bytes()
}
