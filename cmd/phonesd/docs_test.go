package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDocsPage loads /docs from the real server in headless Chromium and
// reads the rendered page: every operation of the served document, each of
// its responses with its description, and every error body's fields and
// headers must be on it, with this server as the base of every path.
func TestDocsPage(t *testing.T) {
	b := startBrowser(t)
	s := start(t, nil)

	r := s.do(http.MethodGet, "/openapi.json", "")
	var doc openAPIDoc
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("/openapi.json: %v", err)
	}
	for _, srv := range doc.Servers {
		if u, err := url.Parse(srv.URL); err != nil || u.IsAbs() || u.Host != "" {
			t.Errorf("served servers URL %q; want a relative URL: the server itself", srv.URL)
		}
	}
	ops := doc.operations()
	if len(ops) == 0 {
		t.Fatal("the served document has no operations")
	}

	b.open(s.base + "/docs")
	// Redoc renders after it has fetched and parsed the document; a busy
	// machine may take a while.
	deadline := time.Now().Add(60 * time.Second)
	for rendered := 0; rendered < len(ops); {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d operations rendered after 60s", rendered, len(ops))
		}
		time.Sleep(100 * time.Millisecond)
		b.eval(`return document.querySelectorAll('[id^="operation/"]').length`, &rendered)
	}
	// innerText is what a reader sees; textContent also has the collapsed
	// server list, which shows each path's full URL.
	var page struct {
		Sections map[string]string
		All      string
	}
	b.eval(`return {
		Sections: Object.fromEntries([...document.querySelectorAll('[id^="operation/"]')].map(e => [e.id, e.innerText])),
		All: document.body.textContent,
	}`, &page)

	for _, op := range ops {
		t.Run(op.ID, func(t *testing.T) {
			text, ok := page.Sections["operation/"+op.ID]
			if !ok {
				t.Fatalf("no section for the operation on the page")
			}
			if !strings.Contains(text, op.Summary) {
				t.Errorf("summary %q not on the page", op.Summary)
			}
			if want := s.base + op.Path; !strings.Contains(page.All, want) {
				t.Errorf("%s not on the page: paths should be shown on this server", want)
			}
			shown := renderedResponses(text)
			for code, resp := range op.Responses {
				got, ok := shown[code]
				if !ok {
					t.Errorf("response %s not on the page", code)
					continue
				}
				if want := firstLine(resp.Description); !strings.Contains(collapse(got), want) {
					t.Errorf("response %s: description %q not on the page; got:\n%s", code, want, got)
				}
				if code < "400" {
					continue
				}
				for _, name := range resp.names() {
					if !hasLine(got, name) {
						t.Errorf("response %s: %q not on the page; got:\n%s", code, name, got)
					}
				}
			}
		})
	}
}

// openAPIDoc is what the page test reads of the served document.
type openAPIDoc struct {
	Servers []struct {
		URL string `json:"url"`
	} `json:"servers"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Responses map[string]docResponse  `json:"responses"`
		Schemas   map[string]docSchemaRef `json:"schemas"`
	} `json:"components"`
}

type docOperation struct {
	ID        string
	Path      string
	Summary   string
	Responses map[string]docResponse
}

type docResponse struct {
	Ref         string `json:"$ref"`
	Description string `json:"description"`
	Headers     map[string]json.RawMessage
	Content     map[string]struct {
		Schema docSchemaRef `json:"schema"`
	} `json:"content"`
}

type docSchemaRef struct {
	Ref        string                     `json:"$ref"`
	Properties map[string]json.RawMessage `json:"properties"`
}

// names are the headers of a response and the fields of its JSON body.
func (r docResponse) names() []string {
	var out []string
	for h := range r.Headers {
		out = append(out, h)
	}
	for field := range r.Content["application/json"].Schema.Properties {
		out = append(out, field)
	}
	slices.Sort(out)
	return out
}

// operations lists the document's operations, with response and schema
// references resolved.
func (d openAPIDoc) operations() []docOperation {
	var ops []docOperation
	for path, item := range d.Paths {
		for method, raw := range item {
			if !slices.Contains([]string{"get", "put", "post", "delete", "patch"}, method) {
				continue
			}
			var op struct {
				OperationID string                 `json:"operationId"`
				Summary     string                 `json:"summary"`
				Responses   map[string]docResponse `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				continue
			}
			for code, resp := range op.Responses {
				if name, ok := strings.CutPrefix(resp.Ref, "#/components/responses/"); ok {
					resp = d.Components.Responses[name]
				}
				if ct, ok := resp.Content["application/json"]; ok {
					if name, ok := strings.CutPrefix(ct.Schema.Ref, "#/components/schemas/"); ok {
						ct.Schema = d.Components.Schemas[name]
						resp.Content["application/json"] = ct
					}
				}
				op.Responses[code] = resp
			}
			ops = append(ops, docOperation{ID: op.OperationID, Path: path, Summary: op.Summary, Responses: op.Responses})
		}
	}
	return ops
}

// renderedResponses splits the rendered text of an operation, from its
// "Responses" heading on, into the text of each response by status code:
// Redoc starts each with a line holding only the code.
func renderedResponses(text string) map[string]string {
	out := map[string]string{}
	_, rest, _ := strings.Cut(text, "\nResponses\n")
	code := ""
	for line := range strings.SplitSeq(rest, "\n") {
		if l := strings.TrimSpace(line); len(l) == 3 && l[0] >= '1' && l[0] <= '5' && strings.Trim(l, "0123456789") == "" {
			code = l
			continue
		}
		if code != "" {
			out[code] += line + "\n"
		}
	}
	return out
}

// firstLine is the first line of a Markdown description as a browser shows
// it: without code marks, whitespace collapsed.
func firstLine(md string) string {
	line, _, _ := strings.Cut(md, "\n")
	return collapse(strings.ReplaceAll(line, "`", ""))
}

// hasLine reports whether text has a line that is line, give or take the
// spaces and tabs around it.
func hasLine(text, line string) bool {
	for l := range strings.SplitSeq(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestDocsPageShowsTheEvents loads /docs in headless Chromium and reads
// its events section, generated from the event contract: every channel
// with its subject, every header of its messages and every property of
// their payloads, however deep, must be on it, with links to the
// documents. Each document is served exactly as the repository's file.
func TestDocsPageShowsTheEvents(t *testing.T) {
	b := startBrowser(t)
	s := start(t, nil)

	file, err := os.ReadFile("../../api/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.do(http.MethodGet, "/asyncapi.yaml", ""); r.status != http.StatusOK || !bytes.Equal(r.body, file) {
		t.Fatalf("/asyncapi.yaml: %d, %d bytes; want 200 and api/asyncapi.yaml's %d", r.status, len(r.body), len(file))
	}
	var doc asyncAPIDoc
	if r := s.do(http.MethodGet, "/asyncapi.json", ""); r.status != http.StatusOK || json.Unmarshal(r.body, &doc) != nil {
		t.Fatalf("/asyncapi.json: %d %.80s; want 200 and the document as JSON", r.status, r.body)
	}
	var want []string
	for _, c := range doc.Channels {
		want = append(want, c.Title)
		if c.Address != nil {
			want = append(want, *c.Address)
		}
		for _, m := range c.Messages {
			msg := doc.Components.Messages[refName(m.Ref)]
			if msg.Headers != nil {
				want = append(want, doc.properties(refName(msg.Headers.Ref))...)
			}
			want = append(want, doc.properties(refName(msg.Payload.Ref))...)
		}
	}
	if len(want) < 20 {
		t.Fatalf("%d names to look for; want the document's channels, headers and fields", len(want))
	}

	b.open(s.base + "/docs")
	var section struct {
		Text  string
		Links []string
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(section.Text, "event_id") {
		if time.Now().After(deadline) {
			t.Fatalf("no events section rendered after 60s; got:\n%s", section.Text)
		}
		time.Sleep(100 * time.Millisecond)
		b.eval(`const parts = [...document.querySelectorAll('[data-section-id^="tag/Events"]')];
			return {
				Text: parts.map(e => e.innerText).join("\n"),
				Links: parts.flatMap(e => [...e.querySelectorAll("a[href]")].map(a => a.href)),
			}`, &section)
	}
	for _, name := range slices.Compact(slices.Sorted(slices.Values(want))) {
		if !strings.Contains(section.Text, name) {
			t.Errorf("%q not in the events section", name)
		}
	}
	for _, path := range []string{"/asyncapi.yaml", "/asyncapi.json"} {
		if !slices.Contains(section.Links, s.base+path) {
			t.Errorf("no link to %s in the events section; links %v", path, section.Links)
		}
	}
}

// asyncAPIDoc is what the page test reads of the event contract.
type asyncAPIDoc struct {
	Channels map[string]struct {
		Title    string
		Address  *string
		Messages map[string]struct {
			Ref string `json:"$ref"`
		}
	}
	Components struct {
		Messages map[string]struct {
			Headers, Payload *struct {
				Ref string `json:"$ref"`
			}
		}
		Schemas map[string]asyncAPISchema
	}
}

type asyncAPISchema struct {
	Ref        string `json:"$ref"`
	AllOf      []asyncAPISchema
	Items      *asyncAPISchema
	Properties map[string]asyncAPISchema
}

// properties returns the property names of the named schema and of every
// schema below it.
func (d asyncAPIDoc) properties(name string) []string {
	var out []string
	var walk func(s asyncAPISchema)
	walk = func(s asyncAPISchema) {
		if s.Ref != "" {
			walk(d.Components.Schemas[refName(s.Ref)])
		}
		for _, a := range s.AllOf {
			walk(a)
		}
		if s.Items != nil {
			walk(*s.Items)
		}
		for p, ps := range s.Properties {
			out = append(out, p)
			walk(ps)
		}
	}
	walk(d.Components.Schemas[name])
	return out
}

func refName(ref string) string { return ref[strings.LastIndexByte(ref, '/')+1:] }
