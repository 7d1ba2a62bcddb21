package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/auth"
)

// apiServer is the real handler over a real SQLite file, with tokens of
// several kinds: tenant-wide, bound to account 1, and of another tenant.
type apiServer struct {
	*Server
	tokens []string
}

func newAPIServer(tb testing.TB) apiServer {
	tb.Helper()
	srv, key := newHandler(tb)
	s := apiServer{Server: srv}
	for _, c := range []auth.Claims{
		{Tenant: "TN-1"},
		{Tenant: "TN-1", Account: 1},
		{Tenant: "TN-2"},
	} {
		s.tokens = append(s.tokens, mint(tb, key, c))
	}
	return s
}

// contractStatuses reads, from the contract, the statuses each operation
// documents, by path template and method.
func contractStatuses(tb testing.TB) map[string]map[string][]int {
	tb.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(api.Spec, &doc); err != nil {
		tb.Fatalf("read the contract: %v", err)
	}
	out := map[string]map[string][]int{}
	for path, ops := range doc.Paths {
		out[path] = map[string][]int{}
		for method, op := range ops {
			for code := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil {
					tb.Fatalf("%s %s: response %q is not a status", method, path, code)
				}
				out[path][strings.ToUpper(method)] = append(out[path][strings.ToUpper(method)], n)
			}
		}
	}
	if len(out) == 0 {
		tb.Fatal("the contract has no paths")
	}
	return out
}

// contractFields reads the fields a 400 may name, from the contract.
func contractFields(tb testing.TB) []string {
	tb.Helper()
	var doc struct {
		Components struct {
			Schemas struct {
				BadRequestError struct {
					Properties struct {
						Field struct {
							Enum []string `json:"enum"`
						} `json:"field"`
					} `json:"properties"`
				} `json:"BadRequestError"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(api.Spec, &doc); err != nil {
		tb.Fatalf("read the contract: %v", err)
	}
	fields := doc.Components.Schemas.BadRequestError.Properties.Field.Enum
	if len(fields) == 0 {
		tb.Fatal("the contract lists no field a 400 may name")
	}
	return fields
}

// route is a path template of the contract as a pattern on the escaped path.
type route struct {
	pattern  *regexp.Regexp
	statuses map[string][]int
}

func contractRoutes(tb testing.TB) []route {
	var routes []route
	for path, statuses := range contractStatuses(tb) {
		segs := strings.Split(path, "/")
		for i, seg := range segs {
			if strings.HasPrefix(seg, "{") {
				segs[i] = "[^/]+"
			} else {
				segs[i] = regexp.QuoteMeta(seg)
			}
		}
		routes = append(routes, route{pattern: regexp.MustCompile("^" + strings.Join(segs, "/") + "$"), statuses: statuses})
	}
	return routes
}

// allowed is the set of statuses the contract lets r get: the documented
// ones of its operation but 5xx (no fault is injected, and the server is not
// draining), 404 or 405 on a contract path without that method, 404 on any
// other path; the operational endpoints answer GET and HEAD.
func allowed(routes []route, r *http.Request) []int {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/openapi.json", "/asyncapi.yaml", "/asyncapi.json":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return []int{http.StatusOK}
		}
		return []int{http.StatusMethodNotAllowed}
	}
	for _, rt := range routes {
		if !rt.pattern.MatchString(r.URL.EscapedPath()) {
			continue
		}
		documented, ok := rt.statuses[r.Method]
		if !ok {
			return []int{http.StatusNotFound, http.StatusMethodNotAllowed}
		}
		return slices.DeleteFunc(slices.Clone(documented), func(s int) bool { return s >= 500 })
	}
	return []int{http.StatusNotFound}
}

// fuzzHeaders reads "Name: value" lines, keeping only those a server could
// receive: a token for a name, no control characters but tab in the value.
func fuzzHeaders(s string) http.Header {
	h := http.Header{}
	for line := range strings.SplitSeq(s, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsFunc(name, func(r rune) bool {
			return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
		}) || strings.ContainsFunc(value, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
			continue
		}
		h.Add(name, strings.TrimLeft(value, " \t"))
	}
	return h
}

var strongETag = regexp.MustCompile(`^"[1-9][0-9]*"$`)

// FuzzAPI sends arbitrary requests through the whole handler, on every
// operation and method: the status is one the contract documents for the
// operation (404 or 405 off it), never 5xx; the body is JSON of the
// contract's error shapes; the headers that go with a status are there.
func FuzzAPI(f *testing.F) {
	const (
		phones  = "/accounts/v1/accounts/1/phones"
		phone1  = "/accounts/v1/accounts/1/phones/1"
		okBody  = `{"number": "1", "type": "MOBILE"}`
		tenant  = 0 // tenant-wide token
		bound   = 1 // token bound to account 1
		other   = 2 // token of another tenant
		noToken = 3 // no Authorization, unless the headers carry one
	)
	for _, body := range decodeSeeds {
		f.Add("POST", phones, uint8(tenant), "Content-Type: application/json", []byte(body))
		f.Add("PATCH", phone1, uint8(tenant), "", []byte(body))
	}
	for _, s := range []struct {
		method, target string
		token          uint8
		headers        string
		body           string
	}{
		{"POST", phones, tenant, "X-Customer-Id: 50624", okBody},
		{"POST", phones, bound, "Content-Type: application/vnd.bank+json; version=1", `{"number": "2", "type": "RESIDENTIAL", "active": false}`},
		{"POST", "/accounts/v1/accounts/2/phones", bound, "", okBody},
		{"POST", phones, other, "", okBody},
		{"POST", phones, tenant, "Content-Type: text/plain", okBody},
		{"POST", phones, tenant, "Content-Type: application/json\nContent-Type: application/json", okBody},
		{"POST", phones, tenant, "X-Customer-Id: 1\nX-Customer-Id: 2", okBody},
		{"POST", "/accounts/v1/accounts/%31/phones", tenant, "", okBody},
		{"POST", "/accounts/v1/accounts/101%2F..%2F201/phones", tenant, "", okBody},
		{"POST", "/accounts/v1/accounts/9223372036854775807/phones", tenant, "", okBody},
		{"POST", phones, tenant, "", `{"number": "1", "type": "MOBILE", "pad": "` + strings.Repeat("x", 64<<10) + `"}`},
		{"GET", phones, tenant, "", ""},
		{"GET", phones + "?active=true&type=MOBILE&limit=1", tenant, "", ""},
		{"GET", phones + "?limit=1&cursor=x", tenant, "", ""},
		{"GET", phones + "?limit=501", tenant, "", ""},
		{"GET", phones + "?active=%zz", tenant, "", ""},
		{"GET", phones + "?cursor=" + strings.Repeat("c", 65), tenant, "", ""},
		{"GET", "/accounts/v1/accounts/2/phones", bound, "", ""},
		{"GET", phone1, tenant, "", ""},
		{"GET", phone1, other, "", ""},
		{"GET", "/accounts/v1/accounts/1/phones/0", tenant, "", ""},
		{"GET", "/accounts/v1/accounts/1/phones/9223372036854775808", tenant, "", ""},
		{"PATCH", phone1, tenant, `If-Match: "1"`, `{"active": false}`},
		{"PATCH", phone1, tenant, `If-Match: *`, `{"extension": null}`},
		{"PATCH", phone1, tenant, `If-Match: "999"`, `{"area_code": 11}`},
		{"PATCH", phone1, tenant, `If-Match: W/"1"`, `{"type": "COMMERCIAL"}`},
		{"PATCH", phone1, tenant, `If-Match: 1`, `{"active": true}`},
		{"PATCH", phone1, tenant, "If-Match: \"1\"\nIf-Match: \"2\"", `{"active": true}`},
		{"PATCH", phone1, tenant, "", `{}`},
		{"PATCH", "/accounts/v1/accounts/1/phones/2", tenant, "", `{"number": "1"}`},
		{"PATCH", phone1, tenant, "Content-Type: application/merge-patch+json", `{"country_code": 1}`},
		{"DELETE", phone1, tenant, "", ""},
		{"PUT", phones, tenant, "", okBody},
		{"HEAD", phones, tenant, "", ""},
		{"OPTIONS", "/accounts/v1/accounts/%31/phones", tenant, "", ""},
		{"GET", "/accounts/v1/accounts/1/phones/", tenant, "", ""},
		{"GET", "/accounts/v1/accounts//phones", tenant, "", ""},
		{"GET", "/accounts/v1/accounts/1/phones/1/x", tenant, "", ""},
		{"GET", "/accounts/v1/accounts/1/phone%73", tenant, "", ""},
		{"GET", "/nope", noToken, "", ""},
		{"GET", "/healthz", noToken, "", ""},
		{"HEAD", "/readyz", noToken, "", ""},
		{"POST", "/openapi.json", noToken, "", ""},
		{"GET", "/asyncapi.json", noToken, "", ""},
		{"DELETE", "/asyncapi.yaml", noToken, "", ""},
		{"GET", "/%68ealthz", noToken, "", ""},
		{"POST", phones, noToken, "", okBody},
		{"POST", phones, noToken, "Authorization: Basic dXNlcjpwYXNz", okBody},
		{"GET", phones, noToken, "Authorization: Bearer not.a.token", ""},
		{"GET", phones, noToken, "Authorization: bearer", ""},
		{"GET", phones, tenant, "Authorization: Bearer x", ""},
	} {
		f.Add(s.method, s.target, s.token, s.headers, []byte(s.body))
	}
	s := newAPIServer(f)
	routes := contractRoutes(f)
	fields := contractFields(f)
	for i, account := range []string{"1", "2", "1"} {
		req := httptest.NewRequest(http.MethodPost, "/accounts/v1/accounts/"+account+"/phones", strings.NewReader(`{"number": "`+strconv.Itoa(100+i)+`", "type": "MOBILE"}`))
		req.Header.Set("Authorization", "Bearer "+s.tokens[tenant])
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			f.Fatalf("seed phone: status %d %s", rec.Code, rec.Body)
		}
	}
	f.Fuzz(func(t *testing.T, method, target string, token uint8, headers string, body []byte) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "http://phonesd.test"+target, bytes.NewReader(body))
		if err != nil || req.URL.Host != "phonesd.test" {
			return // not a request a client could send to us
		}
		req.Header = fuzzHeaders(headers)
		if int(token) < len(s.tokens) {
			req.Header.Set("Authorization", "Bearer "+s.tokens[token])
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		res := rec.Result()
		got, _ := io.ReadAll(res.Body)
		describe := func() string {
			return req.Method + " " + req.URL.String() + " " + strconv.Quote(headers) + " " + strconv.Quote(string(body)) + ": " + strconv.Itoa(res.StatusCode) + " " + string(got)
		}
		if want := allowed(routes, req); !slices.Contains(want, res.StatusCode) {
			t.Fatalf("%s; want one of %v", describe(), want)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: Content-Type %q; want application/json", describe(), ct)
		}
		if !json.Valid(got) {
			t.Fatalf("%s: the body is not JSON", describe())
		}
		switch code := res.StatusCode; {
		case code >= 400:
			var e map[string]any
			if err := json.Unmarshal(got, &e); err != nil {
				t.Fatalf("%s: the body is not an object", describe())
			}
			msg, _ := e["message"].(string)
			field, _ := e["field"].(string)
			if msg == "" || (code == http.StatusBadRequest && (field == "" || len(e) != 2)) || (code != http.StatusBadRequest && len(e) != 1) {
				t.Fatalf("%s: want {message} or, on 400, {message, field}", describe())
			}
			if code == http.StatusBadRequest && !slices.Contains(fields, field) {
				t.Fatalf("%s: field %q is not one the contract lists", describe(), field)
			}
			if utf8.RuneCountInString(msg) > 256 {
				t.Fatalf("%s: a message over the contract's 256 characters", describe())
			}
			if code == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("%s: WWW-Authenticate %q", describe(), res.Header.Get("WWW-Authenticate"))
			}
			if code == http.StatusMethodNotAllowed && res.Header.Get("Allow") == "" {
				t.Fatalf("%s: no Allow", describe())
			}
		case code == http.StatusOK && strings.Count(req.URL.Path, "/") == 6 && !strongETag.MatchString(res.Header.Get("ETag")):
			t.Fatalf("%s: ETag %q; want a strong tag", describe(), res.Header.Get("ETag"))
		}
	})
}

// TestWrongMethodOnEscapedPath: the route is checked first, so a contract
// path with a method it lacks is a 405 with Allow, whatever its parameters,
// percent-escaped ones included.
func TestWrongMethodOnEscapedPath(t *testing.T) {
	s := newAPIServer(t)
	for _, target := range []string{"/accounts/v1/accounts/%31/phones", "/accounts/v1/accounts/1/phones/%31"} {
		req := httptest.NewRequest(http.MethodDelete, target, nil)
		req.Header.Set("Authorization", "Bearer "+s.tokens[0])
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") == "" {
			t.Errorf("DELETE %s: status %d Allow %q; want 405 with Allow", target, rec.Code, rec.Header().Get("Allow"))
		}
	}
}
