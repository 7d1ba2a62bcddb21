package httpapi

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/phonesd/phonesd/internal/phone"
)

// The fuzz targets here hold the gate's parameter parsers to references
// written from the contract: each parser never panics, and accepts exactly
// what the contract allows.

var idSeeds = []string{
	"1", "42", "9223372036854775807", "9223372036854775808", "18446744073709551616",
	"99999999999999999999", "1000000000000000000", "0", "00", "01", "-1", "+1", "-0",
	" 1", "1 ", "1\x00", "", "1e3", "1.0", "0x10", "1_000", "١", "１", "%31", "1,2",
}

// FuzzParseID checks parseID against strconv: it accepts exactly the
// canonical decimal spelling of 1..MaxInt64, the one that formats back to
// the same string, and reads its value.
func FuzzParseID(f *testing.F) {
	for _, s := range idSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseID(s)
		n, err := strconv.ParseInt(s, 10, 64)
		want := err == nil && n >= 1 && strconv.FormatInt(n, 10) == s
		if ok != want || (ok && got != n) {
			t.Fatalf("parseID(%q) = %d, %v; want %d, %v", s, got, ok, n, want)
		}
	})
}

// FuzzCustomerID checks the x-customer-id header: absent is nil, one value
// is read as parseID reads it, two values are refused, and every refusal is
// a 400 on x-customer-id.
func FuzzCustomerID(f *testing.F) {
	for _, s := range idSeeds {
		f.Add(uint8(1), s, "")
	}
	f.Add(uint8(0), "", "")
	f.Add(uint8(2), "1", "1")
	f.Add(uint8(2), "1", "x")
	f.Fuzz(func(t *testing.T, count uint8, first, second string) {
		h := http.Header{}
		vals := []string{first, second}[:count%3]
		for _, v := range vals {
			h.Add("X-Customer-Id", v)
		}
		got, err := customerID(h)
		if err != nil {
			var fe *phone.FieldError
			if !errors.As(err, &fe) || fe.Field != "x-customer-id" || fe.Message == "" {
				t.Fatalf("customerID(%q): error %v; want a 400 on x-customer-id", vals, err)
			}
		}
		switch len(vals) {
		case 0:
			if got != nil || err != nil {
				t.Fatalf("customerID(no header) = %v, %v; want nil, nil", got, err)
			}
		case 1:
			id, ok := parseID(vals[0])
			if ok != (err == nil) || (ok && (got == nil || *got != id)) {
				t.Fatalf("customerID(%q) = %v, %v; parseID reads %d, %v", vals[0], got, err, id, ok)
			}
		case 2:
			if err == nil {
				t.Fatalf("customerID(%q) = %v; want an error for two values", vals, *got)
			}
		}
	})
}

// FuzzParseIfMatch checks If-Match parsing against RFC 9110's grammar: "*"
// alone is any version; a list of entity tags is read as the versions its
// strong tags name in our spelling (weak tags and others name none); and
// whatever the input, a version returned was written as a strong tag.
func FuzzParseIfMatch(f *testing.F) {
	for _, s := range []string{
		`*`, ` * `, `"1"`, `"1", "2"`, `"1",W/"2", "x"`, `W/"1"`, `"01"`, `""`, `"`, `W/"`, `1`,
		`"1" "2"`, `"1",*`, `*,"1"`, `"9223372036854775808"`, `"a""b"`, "\"1\"\t,\t\"2\"", `"1",`, `,"1"`, `"1",,"2"`,
	} {
		f.Add(s, "", false)
	}
	f.Add(`"1"`, `"2", "3"`, true)
	f.Add(`"1"`, `*`, true)
	f.Add(`"1"`, ``, true)
	f.Fuzz(func(t *testing.T, first, second string, two bool) {
		vals := []string{first}
		if two {
			vals = append(vals, second)
		}
		got, err := parseIfMatch(vals)
		joined := strings.Join(vals, ",")
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("parseIfMatch(%q): error without a message", vals)
			}
		} else {
			for _, v := range got {
				if v < 1 || !strings.Contains(joined, `"`+strconv.FormatInt(v, 10)+`"`) {
					t.Fatalf("parseIfMatch(%q) = %v: %d was not sent as a strong tag", vals, got, v)
				}
			}
		}
		want, wantErr, ok := referenceIfMatch(joined)
		if !ok {
			return // outside the grammar the reference reads
		}
		if (err != nil) != wantErr || !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Fatalf("parseIfMatch(%q) = %v, %v; want %v, error %v", vals, got, err, want, wantErr)
		}
	})
}

// referenceIfMatch reads a field value by RFC 9110's grammar:
//
//	If-Match = "*" / #entity-tag
//	entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
//	etagc = %x21 / %x23-7E / obs-text
//
// It leaves out (ok false) what phonesd reads by its own, looser rules: a
// list mixing "*" with tags, empty list elements, tags holding a comma, and
// quoted tags holding characters etagc does not allow; and bytes other than
// visible ASCII, space and tab, which HTTP carries only as obs-text.
func referenceIfMatch(v string) (versions []int64, isErr, ok bool) {
	for _, c := range []byte(v) {
		if (c < 0x20 && c != '\t') || c >= 0x7f {
			return nil, false, false
		}
	}
	elems := strings.Split(v, ",")
	if len(elems) == 1 && strings.Trim(v, " \t") == "*" {
		return nil, false, true
	}
	versions = []int64{}
	for _, e := range elems {
		e = strings.Trim(e, " \t")
		opaque := strings.TrimPrefix(e, "W/")
		switch {
		case e == "" || e == "*" || strings.Count(e, `"`) == 1:
			return nil, false, false
		case len(opaque) < 2 || opaque[0] != '"' || opaque[len(opaque)-1] != '"':
			return nil, true, true
		case !etagChars(opaque[1 : len(opaque)-1]):
			return nil, false, false
		case !strings.HasPrefix(e, "W/"):
			if n, ok := parseID(opaque[1 : len(opaque)-1]); ok {
				versions = append(versions, n)
			}
		}
	}
	return versions, false, true
}

// etagChars reports whether s is *etagc.
func etagChars(s string) bool {
	for _, c := range []byte(s) {
		if c != 0x21 && (c < 0x23 || c == 0x7f) {
			return false
		}
	}
	return true
}

// listFields are the names a List phones 400 may carry.
var listFields = []string{"accountId", "active", "type", "limit", "cursor"}

// FuzzListParams checks List phones' path and query: a refusal is a 400
// naming one of them; an acceptance means each filter was sent at most once
// and is valid, and the account is the canonical id of the path.
func FuzzListParams(f *testing.F) {
	for _, q := range []string{
		"", "active=true", "active=false", "active=TRUE", "active=1", "active=", "active=true&active=true",
		"type=MOBILE", "type=RESIDENTIAL&type=COMMERCIAL", "type=mobile", "type=FAX",
		"limit=1", "limit=500", "limit=501", "limit=0", "limit=01", "limit=-1", "limit=1e2", "limit=",
		"cursor=x", "cursor=", "cursor=" + strings.Repeat("c", 64), "cursor=" + strings.Repeat("c", 65),
		"active=tr%75e", "active=%zz", "active=true;x=1", "type=FAX;", "limit=%", "x=%zz&active=nope",
		"active=true&type=MOBILE&limit=2&cursor=abc&unknown=1", "ACTIVE=yes", "active%3Dtrue",
	} {
		f.Add("1", q)
	}
	for _, id := range idSeeds {
		f.Add(id, "")
	}
	f.Fuzz(func(t *testing.T, account, rawQuery string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/accounts/v1/accounts/" + account + "/phones", RawQuery: rawQuery}, Header: http.Header{}}
		var in request
		err := listPhonesParams(&in, r, pathArgs{account: account})
		if err != nil {
			var fe *phone.FieldError
			if !errors.As(err, &fe) || !slices.Contains(listFields, fe.Field) || fe.Message == "" {
				t.Fatalf("listPhonesParams(%q, %q): error %v; want a 400 on one of %v", account, rawQuery, err, listFields)
			}
			return
		}
		if id, ok := parseID(account); !ok || in.account != id {
			t.Fatalf("listPhonesParams(%q, %q): account %d; parseID reads %d, %v", account, rawQuery, in.account, id, ok)
		}
		query := r.URL.Query()
		got := in.list
		if v := query.Get("active"); (got.active != nil) != query.Has("active") || (got.active != nil && strconv.FormatBool(*got.active) != v) {
			t.Fatalf("listPhonesParams(%q): active %v; url.Query reads %q", rawQuery, got.active, query["active"])
		}
		if v := query.Get("type"); (got.typ != nil) != query.Has("type") || (got.typ != nil && string(*got.typ) != v) {
			t.Fatalf("listPhonesParams(%q): type %v; url.Query reads %q", rawQuery, got.typ, query["type"])
		}
		if v := query.Get("limit"); (query.Has("limit") && strconv.Itoa(got.limit) != v) || (!query.Has("limit") && got.limit != defaultLimit) {
			t.Fatalf("listPhonesParams(%q): limit %d; url.Query reads %q", rawQuery, got.limit, query["limit"])
		}
		if got.cursor != query.Get("cursor") {
			t.Fatalf("listPhonesParams(%q): cursor %q; url.Query reads %q", rawQuery, got.cursor, query["cursor"])
		}
		valid := map[string]func(string) bool{
			"active": func(v string) bool { return v == "true" || v == "false" },
			"type":   func(v string) bool { return v == "RESIDENTIAL" || v == "COMMERCIAL" || v == "MOBILE" },
			"limit":  func(v string) bool { n, ok := parseID(v); return ok && n <= 500 },
			"cursor": func(v string) bool { return v != "" && len(v) <= 64 },
		}
		for name, ok := range valid {
			if vals := query[name]; len(vals) > 1 || (len(vals) == 1 && !ok(vals[0])) {
				t.Fatalf("listParams(%q) accepts %s=%q", rawQuery, name, vals)
			}
		}
		if name := malformedFilter(rawQuery); name != "" {
			t.Fatalf("listParams(%q) accepts a malformed %s", rawQuery, name)
		}
	})
}

// malformedFilter returns the filter a pair of rawQuery names when that pair
// cannot be decoded (a bad escape, or a semicolon, which url.ParseQuery
// refuses), or "".
func malformedFilter(rawQuery string) string {
	for pair := range strings.SplitSeq(rawQuery, "&") {
		key, value, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(key)
		if err != nil {
			name = key
		}
		name, _, _ = strings.Cut(name, ";")
		if !slices.Contains(listFields[1:], name) {
			continue
		}
		_, errV := url.QueryUnescape(value)
		if err != nil || errV != nil || strings.Contains(pair, ";") {
			return name
		}
	}
	return ""
}

// FuzzIsJSON checks the media type rule: application/json or
// application/*+json, parameters allowed, and a charset only if UTF-8;
// case does not matter in the type, the subtype or the charset.
func FuzzIsJSON(f *testing.F) {
	for _, ct := range []string{
		"application/json", "APPLICATION/JSON", "application/json; charset=utf-8", "application/json; charset=UTF-8",
		`application/json; charset="utf-8"`, "application/json; charset=latin1", "application/json;charset=utf-16",
		"application/merge-patch+json", "application/vnd.bank+json; version=1", "application/+json", "application/jsonx",
		"application/json+xml", "text/json", "json", "application/json;;=", "application/json; charset", "application/json; a=1; a=2",
		"", " application/json ", "application/json\x00", "application/*+json", "*/*", "multipart/form-data; boundary=x",
	} {
		f.Add(ct)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		got := isJSON(ct)
		mt, params, err := mime.ParseMediaType(ct)
		sub, isApp := strings.CutPrefix(mt, "application/")
		cs, hasCS := params["charset"]
		want := err == nil && isApp && (sub == "json" || strings.HasSuffix(sub, "+json")) && (!hasCS || strings.EqualFold(cs, "utf-8"))
		if got != want {
			t.Fatalf("isJSON(%q) = %v; want %v (media type %q %v, %v)", ct, got, want, mt, params, err)
		}
		if upper := asciiUpper(ct); isJSON(upper) != got {
			t.Fatalf("isJSON(%q) = %v but isJSON(%q) = %v", ct, got, upper, !got)
		}
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestListRefusesMalformedFilters: url.Query drops a pair it cannot decode,
// which would ignore a filter sent malformed and give the client every phone.
// The contract makes a bad active, type, limit or cursor a 400 naming it.
func TestListRefusesMalformedFilters(t *testing.T) {
	for _, tt := range []struct{ query, field string }{
		{"active=%zz", "active"},
		{"active=true;x=1", "active"},
		{"type=FAX;", "type"},
		{"type=%ZZ", "type"},
		{"limit=%", "limit"},
		{"cursor=%g0", "cursor"},
		{"active=false&active=%zz", "active"},
	} {
		t.Run(tt.query, func(t *testing.T) {
			r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/accounts/v1/accounts/1/phones", RawQuery: tt.query}, Header: http.Header{}}
			var in request
			err := listPhonesParams(&in, r, pathArgs{account: "1"})
			var fe *phone.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("listPhonesParams(%q): error %v; want a 400 on %s", tt.query, err, tt.field)
			}
		})
	}
}
