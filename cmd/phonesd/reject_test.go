package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// rejected is a request the contract refuses and the answer it must get.
type rejected struct {
	name    string
	path    string // default /accounts/v1/accounts/1/phones
	method  string // default POST
	body    string
	headers [][2]string // default: the tenant-wide token and JSON
	status  int
	field   string // for 400s
	message string // when the exact message matters
}

func (c rejected) send(t *testing.T, s *phonesd) response {
	t.Helper()
	path, method, headers := c.path, c.method, c.headers
	if path == "" {
		path = "/accounts/v1/accounts/1/phones"
	}
	if method == "" {
		method = http.MethodPost
	}
	if headers == nil {
		headers = [][2]string{bearer(s.token), jsonCT}
	}
	return s.do(method, path, c.body, headers...)
}

// checkRejected sends each case and checks the status, the body's exact
// shape, and that nothing was emitted: the event file holds exactly
// wantEvents events afterwards, those of the test's earlier changes.
func checkRejected(t *testing.T, s *phonesd, cases []rejected, wantEvents int) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.send(t, s)
			if r.status != c.status {
				t.Fatalf("status %d body %s; want %d", r.status, r.body, c.status)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q; want application/json", ct)
			}
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("body %q is not JSON", r.body)
			}
			msg, _ := body["message"].(string)
			if msg == "" {
				t.Errorf("body %s; want a message", r.body)
			}
			if c.message != "" && msg != c.message {
				t.Errorf("message %q; want %q", msg, c.message)
			}
			if c.status == http.StatusBadRequest {
				if len(body) != 2 || body["field"] != c.field {
					t.Errorf("body %s; want {message, field: %q}", r.body, c.field)
				}
			} else if len(body) != 1 {
				t.Errorf("body %s; want only message", r.body)
			}
		})
	}
	if evs := s.delivered(); len(evs) != wantEvents {
		t.Errorf("%d events after rejected requests; want %d", len(evs), wantEvents)
	}
}

const okBody = `{"number": "912345678", "type": "MOBILE"}`

func TestCreatePhoneRejectsBadBodies(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		big := func(n int) string { return strings.Repeat("1", n) }
		checkRejected(t, s, []rejected{
			{name: "empty body", body: "", status: 400, field: "body"},
			{name: "not JSON", body: "number=1", status: 400, field: "body"},
			{name: "truncated", body: `{"number": "1", "type": "MOB`, status: 400, field: "body"},
			{name: "array", body: `[` + okBody + `]`, status: 400, field: "body"},
			{name: "null", body: `null`, status: 400, field: "body"},
			{name: "string", body: `"x"`, status: 400, field: "body"},
			{name: "trailing data", body: okBody + ` {}`, status: 400, field: "body"},
			{name: "invalid UTF-8", body: "{\"number\": \"1\xff\", \"type\": \"MOBILE\"}", status: 400, field: "body"},
			{name: "number missing", body: `{"type": "MOBILE"}`, status: 400, field: "number"},
			{name: "type missing", body: `{"number": "1"}`, status: 400, field: "type"},
			{name: "number null", body: `{"number": null, "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "number as integer", body: `{"number": 912345678, "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "number 16 chars", body: `{"number": "` + big(16) + `", "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "number 15 non-ASCII code points", body: `{"number": "١٢٣", "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "number without digits", body: `{"number": "() -", "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "number empty", body: `{"number": "", "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "number letters", body: `{"number": "call me", "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "number plus not first", body: `{"number": "55+11", "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "number two plus", body: `{"number": "++5511", "type": "MOBILE"}`, status: 400, field: "number"},
			{name: "type lower case", body: `{"number": "1", "type": "mobile"}`, status: 400, field: "type"},
			{name: "type unknown", body: `{"number": "1", "type": "FAX"}`, status: 400, field: "type"},
			{name: "type null", body: `{"number": "1", "type": null}`, status: 400, field: "type"},
			{name: "type number", body: `{"number": "1", "type": 1}`, status: 400, field: "type"},
			{name: "active string", body: `{"number": "1", "type": "MOBILE", "active": "true"}`, status: 400, field: "active"},
			{name: "active null", body: `{"number": "1", "type": "MOBILE", "active": null}`, status: 400, field: "active"},
			{name: "area_code string", body: `{"number": "1", "type": "MOBILE", "area_code": "11"}`, status: 400, field: "area_code"},
			{name: "area_code fraction", body: `{"number": "1", "type": "MOBILE", "area_code": 11.5}`, status: 400, field: "area_code"},
			{name: "area_code 11.0", body: `{"number": "1", "type": "MOBILE", "area_code": 11.0}`, status: 400, field: "area_code"},
			{name: "area_code exponent", body: `{"number": "1", "type": "MOBILE", "area_code": 1e1}`, status: 400, field: "area_code"},
			{name: "area_code negative", body: `{"number": "1", "type": "MOBILE", "area_code": -1}`, status: 400, field: "area_code"},
			{name: "area_code beyond int32", body: `{"number": "1", "type": "MOBILE", "area_code": 2147483648}`, status: 400, field: "area_code"},
			{name: "area_code beyond int64", body: `{"number": "1", "type": "MOBILE", "area_code": 99999999999999999999}`, status: 400, field: "area_code"},
			{name: "area_code null", body: `{"number": "1", "type": "MOBILE", "area_code": null}`, status: 400, field: "area_code"},
			{name: "country_code 100000", body: `{"number": "1", "type": "MOBILE", "country_code": 100000}`, status: 400, field: "country_code"},
			{name: "country_code negative", body: `{"number": "1", "type": "MOBILE", "country_code": -55}`, status: 400, field: "country_code"},
			{name: "country_code string", body: `{"number": "1", "type": "MOBILE", "country_code": "55"}`, status: 400, field: "country_code"},
			{name: "country_code null", body: `{"number": "1", "type": "MOBILE", "country_code": null}`, status: 400, field: "country_code"},
			{name: "extension 11 chars", body: `{"number": "1", "type": "MOBILE", "extension": "` + strings.Repeat("x", 11) + `"}`, status: 400, field: "extension"},
			{name: "extension 11 code points", body: `{"number": "1", "type": "MOBILE", "extension": "ééééééééééé"}`, status: 400, field: "extension"},
			{name: "extension number", body: `{"number": "1", "type": "MOBILE", "extension": 12}`, status: 400, field: "extension"},
			{name: "extension with NUL", body: `{"number": "1", "type": "MOBILE", "extension": "a\u0000b"}`, status: 400, field: "extension"},
			{name: "extension null", body: `{"number": "1", "type": "MOBILE", "extension": null}`, status: 400, field: "extension"},
			{name: "duplicate key", body: `{"number": "1", "type": "MOBILE", "number": "2"}`, status: 400, field: "number"},
			{name: "schema order: number before type", body: `{"type": 5, "number": 7}`, status: 400, field: "number"},
			{name: "schema order: long number before bad type", body: `{"type": 5, "number": "` + big(16) + `"}`, status: 400, field: "number"},
			{name: "schema order: type before area", body: `{"area_code": "x", "number": "1", "type": "X"}`, status: 400, field: "type"},
			{name: "schema order: country before extension", body: `{"extension": 1, "country_code": -1, "number": "1", "type": "MOBILE"}`, status: 400, field: "country_code"},
			{name: "whole body beats fields", body: `{"number": 1, "type": 2} x`, status: 400, field: "body"},
		}, 0)
	})
}

func TestCreatePhoneAcceptsBoundaryValues(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		for i, body := range []string{
			`{"number": "123456789012345", "type": "RESIDENTIAL", "extension": "1234567890"}`,
			`{"number": "+1", "type": "MOBILE", "area_code": 2147483647, "country_code": 99999}`,
			`{"number": "2", "type": "MOBILE", "area_code": 0, "country_code": 0}`,
			`{"number": "3", "type": "MOBILE", "extension": "éééééééééé"}`,
			`{"number": "4", "type": "MOBILE", "area_code": -0}`,
			"\n {\"number\": \"5\", \"type\": \"MOBILE\"} \n",
		} {
			if r := s.create(int64(100+i), body); r.status != 200 {
				t.Errorf("body %s: status %d %s; want 200", body, r.status, r.body)
			}
		}
	})
}

func TestCreatePhoneRejectsBadPathAndHeaders(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		var cases []rejected
		for _, id := range []string{"0", "-1", "+1", "01", "abc", "1.0", "1e3", "9223372036854775808", "99999999999999999999", "101%2F..%2F201", "%31", " 1"} {
			cases = append(cases, rejected{name: "accountId " + id, path: "/accounts/v1/accounts/" + strings.ReplaceAll(id, " ", "%20") + "/phones", body: okBody, status: 400, field: "accountId"})
		}
		for _, v := range []string{"", "0", "-1", "abc", "1.5", "+1", "01", "9223372036854775808", "1, 2"} {
			cases = append(cases, rejected{name: "x-customer-id " + v, body: okBody, status: 400, field: "x-customer-id",
				headers: [][2]string{bearer(s.token), jsonCT, {"x-customer-id", v}}})
		}
		cases = append(cases,
			rejected{name: "x-customer-id repeated", body: okBody, status: 400, field: "x-customer-id",
				headers: [][2]string{bearer(s.token), jsonCT, {"x-customer-id", "1"}, {"x-customer-id", "2"}}},
			rejected{name: "path before header", path: "/accounts/v1/accounts/0/phones", body: okBody, status: 400, field: "accountId",
				headers: [][2]string{bearer(s.token), jsonCT, {"x-customer-id", "x"}}},
			rejected{name: "header before body", body: `{}`, status: 400, field: "x-customer-id",
				headers: [][2]string{bearer(s.token), jsonCT, {"x-customer-id", "x"}}},
		)
		checkRejected(t, s, cases, 0)
		if r := s.create(9223372036854775807, okBody, [2]string{"x-customer-id", "9223372036854775807"}); r.status != 200 {
			t.Errorf("max int64 account and customer: status %d %s; want 200", r.status, r.body)
		}
	})
}

func TestCreatePhoneRequestFaults(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		tok := bearer(s.token)
		huge := `{"number": "1", "type": "MOBILE", "pad": "` + strings.Repeat("x", 64<<10) + `"}`
		checkRejected(t, s, []rejected{
			{name: "unknown path", path: "/accounts/v1/accounts/1/phone", body: okBody, status: 404},
			{name: "trailing slash", path: "/accounts/v1/accounts/1/phones/", body: okBody, status: 404},
			{name: "unknown path without token", path: "/nope", headers: [][2]string{}, status: 404},
			{name: "wrong method", method: http.MethodPut, body: okBody, status: 405},
			{name: "text/plain", body: okBody, headers: [][2]string{tok, {"Content-Type", "text/plain"}}, status: 415, message: "Unsupported Content-Type: send application/json"},
			{name: "form", body: okBody, headers: [][2]string{tok, {"Content-Type", "application/x-www-form-urlencoded"}}, status: 415},
			{name: "latin1 charset", body: okBody, headers: [][2]string{tok, {"Content-Type", "application/json; charset=latin1"}}, status: 415},
			{name: "malformed media type", body: okBody, headers: [][2]string{tok, {"Content-Type", "application/json;;="}}, status: 415},
			{name: "over 64 KiB", body: huge, status: 413},
			{name: "media type before size", body: huge, headers: [][2]string{tok, {"Content-Type", "text/plain"}}, status: 415},
			{name: "size before body", body: `[` + huge, status: 413},
		}, 0)
		r := s.do(http.MethodPut, "/accounts/v1/accounts/1/phones", okBody, tok, jsonCT)
		if got := r.header.Get("Allow"); !strings.Contains(got, "POST") {
			t.Errorf("Allow %q; want POST listed", got)
		}
		for i, ct := range []string{"application/json; charset=utf-8", "application/merge-patch+json", "APPLICATION/JSON", "application/vnd.bank+json; version=1"} {
			body := fmt.Sprintf(`{"number": "%d", "type": "MOBILE"}`, 700+i)
			if r := s.do(http.MethodPost, "/accounts/v1/accounts/2/phones", body, tok, [2]string{"Content-Type", ct}); r.status != 200 {
				t.Errorf("Content-Type %q: status %d %s; want 200", ct, r.status, r.body)
			}
		}
		if r := s.do(http.MethodPost, "/accounts/v1/accounts/3/phones", okBody, tok); r.status != 200 {
			t.Errorf("no Content-Type: status %d %s; want 200 (read as JSON)", r.status, r.body)
		}
		exact := `{"number": "5", "type": "MOBILE", "pad": "` + strings.Repeat("x", 64<<10-len(`{"number": "5", "type": "MOBILE", "pad": ""}`)) + `"}`
		if len(exact) != 64<<10 {
			t.Fatalf("test body is %d bytes", len(exact))
		}
		if r := s.create(4, exact); r.status != 200 {
			t.Errorf("body of exactly 64 KiB: status %d; want 200", r.status)
		}
	})
}
