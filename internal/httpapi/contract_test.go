package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestContractStatesItsLimits reads the document phonesd serves, as an
// integrator's tool or an API security scanner would, and checks that it
// states what the service accepts and sends: a bound on every string,
// integer and array; 401, 429 and 503 on every operation, with their
// bodies and headers; the rate-limit headers on the answers that carry
// them; and the token verifier's practices on the bearer scheme.
func TestContractStatesItsLimits(t *testing.T) {
	s := newAPIServer(t)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("/openapi.json: %v", err)
	}

	walkSchemas(doc, "", func(path string, schema map[string]any) {
		types := schemaTypes(schema)
		has := func(keys ...string) bool {
			return slices.ContainsFunc(keys, func(k string) bool { _, ok := schema[k]; return ok })
		}
		if slices.Contains(types, "string") && !has("maxLength", "enum", "const", "pattern", "format") {
			t.Errorf("%s: a string without maxLength, enum, const, pattern or format", path)
		}
		if slices.Contains(types, "integer") && (!has("format") || !has("minimum", "enum", "const") || !has("maximum", "enum", "const")) {
			t.Errorf("%s: an integer without format, minimum and maximum", path)
		}
		if slices.Contains(types, "array") && !has("maxItems") {
			t.Errorf("%s: an array without maxItems", path)
		}
	})

	rateLimited := []string{"200", "400", "403", "408", "409", "412", "413", "415", "422", "429"}
	paths := doc["paths"].(map[string]any)
	for path, item := range paths {
		for method, v := range item.(map[string]any) {
			op, ok := v.(map[string]any)
			if !ok || method == "parameters" {
				continue
			}
			name := strings.ToUpper(method) + " " + path
			responses := op["responses"].(map[string]any)
			for code, header := range map[string]string{"401": "WWW-Authenticate", "429": "Retry-After", "503": "Retry-After"} {
				r, ok := responses[code]
				if !ok {
					t.Errorf("%s: %s not documented", name, code)
					continue
				}
				resp := resolve(doc, r)
				if _, ok := resp["content"].(map[string]any)["application/json"]; !ok {
					t.Errorf("%s %s: no JSON body documented", name, code)
				}
				if _, ok := headers(doc, resp)[header]; !ok {
					t.Errorf("%s %s: header %s not documented", name, code, header)
				}
			}
			for code, r := range responses {
				if !slices.Contains(rateLimited, code) && !(code == "404" && strings.HasSuffix(path, "{phoneId}")) {
					continue
				}
				h := headers(doc, resolve(doc, r))
				for _, want := range []string{"RateLimit-Policy", "RateLimit"} {
					if _, ok := h[want]; !ok {
						t.Errorf("%s %s: header %s not documented", name, code, want)
					}
				}
			}
		}
	}

	scheme := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)["BearerAuth"].(map[string]any)
	desc, _ := scheme["description"].(string)
	for _, practice := range []string{"RS256", "EdDSA", "none", "2048", "kid", "exp", "iss", "aud", "typ", "tenant_id"} {
		if !strings.Contains(desc, practice) {
			t.Errorf("the bearer scheme's description does not mention %s", practice)
		}
	}
}

// walkSchemas calls f with every schema of the document: those under a
// "schema" key, the components' schemas, and every schema nested in them.
func walkSchemas(node any, path string, f func(path string, schema map[string]any)) {
	switch n := node.(type) {
	case map[string]any:
		if _, ok := n["type"]; ok {
			f(path, n)
		}
		for k, v := range n {
			if k == "example" || k == "examples" {
				continue
			}
			walkSchemas(v, path+"/"+k, f)
		}
	case []any:
		for i, v := range n {
			walkSchemas(v, fmt.Sprintf("%s/%d", path, i), f)
		}
	}
}

// schemaTypes lists a schema's types: "type" may be a name or a list.
func schemaTypes(schema map[string]any) []string {
	switch t := schema["type"].(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, v := range t {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// resolve follows a $ref within the document.
func resolve(doc map[string]any, v any) map[string]any {
	m := v.(map[string]any)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	node := any(doc)
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		node = node.(map[string]any)[part]
	}
	return node.(map[string]any)
}

// headers returns a response's headers, by name.
func headers(doc map[string]any, resp map[string]any) map[string]any {
	h, _ := resp["headers"].(map[string]any)
	out := map[string]any{}
	for name, v := range h {
		out[name] = resolve(doc, v)
	}
	return out
}
