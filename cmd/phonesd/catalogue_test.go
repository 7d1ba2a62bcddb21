package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var update = flag.Bool("update", false, "rewrite testdata/catalogue.golden from this run")

const cataloguePath = "testdata/catalogue.golden"

// hostile is a malformed Create phone request and what the contract answers.
type hostile struct {
	name    string
	path    string // default /accounts/v1/accounts/1/phones
	method  string // default POST
	body    string
	chunked bool        // send the body without a Content-Length
	headers [][2]string // default: a valid tenant-wide token and JSON
	status  int
	field   string // for a 400
}

// TestCatalogue sends every malformed Create phone request and forged token
// of the catalogue and checks the exact answer (kept in
// testdata/catalogue.golden, the same on every backend; -update rewrites it),
// then that none of them stored a phone or emitted an event.
func TestCatalogue(t *testing.T) {
	var golden []byte
	if !*update {
		var err error
		if golden, err = os.ReadFile(cataloguePath); err != nil {
			t.Fatalf("read the golden file (go test ./cmd/phonesd -run TestCatalogue -update writes it): %v", err)
		}
	}
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		cases := catalogue(t, s)
		answers := map[string]goldenAnswer{}
		for _, c := range cases {
			if _, dup := answers[c.name]; dup {
				t.Fatalf("two cases are named %q", c.name)
			}
			answers[c.name] = checkHostile(t, s, c)
		}
		got := renderGolden(t, answers)
		switch {
		case *update && golden == nil:
			if err := os.WriteFile(cataloguePath, got, 0o644); err != nil {
				t.Fatal(err)
			}
			golden = got // the other backends must answer alike
		case !bytes.Equal(got, golden):
			diffGolden(t, golden, answers)
		}
		checkNothingStored(t, s, cases)
	})
}

// goldenAnswer is what the golden file keeps of an answer.
type goldenAnswer struct {
	Status          int             `json:"status"`
	WWWAuthenticate string          `json:"www_authenticate,omitempty"`
	Body            json.RawMessage `json:"body"`
}

// renderGolden writes one case a line, sorted by name, as a JSON object.
func renderGolden(t *testing.T, answers map[string]goldenAnswer) []byte {
	t.Helper()
	names := make([]string, 0, len(answers))
	for name := range answers {
		names = append(names, name)
	}
	slices.Sort(names)
	var out bytes.Buffer
	out.WriteString("{\n")
	for i, name := range names {
		var line bytes.Buffer
		enc := json.NewEncoder(&line)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(name); err != nil {
			t.Fatal(err)
		}
		line.Truncate(line.Len() - 1)
		line.WriteString(": ")
		if err := enc.Encode(answers[name]); err != nil {
			t.Fatal(err)
		}
		line.Truncate(line.Len() - 1)
		if i < len(names)-1 {
			line.WriteString(",")
		}
		out.Write(line.Bytes())
		out.WriteString("\n")
	}
	out.WriteString("}\n")
	return out.Bytes()
}

// diffGolden reports each case whose answer differs from the golden file.
func diffGolden(t *testing.T, golden []byte, answers map[string]goldenAnswer) {
	t.Helper()
	var want map[string]goldenAnswer
	if err := json.Unmarshal(golden, &want); err != nil {
		t.Fatalf("%s is not JSON: %v", cataloguePath, err)
	}
	for name, got := range answers {
		w, ok := want[name]
		switch {
		case !ok:
			t.Errorf("%s: not in %s (run with -update)", name, cataloguePath)
		case got.Status != w.Status || got.WWWAuthenticate != w.WWWAuthenticate || !bytes.Equal(got.Body, w.Body):
			t.Errorf("%s: got %d %q %s; want %d %q %s", name, got.Status, got.WWWAuthenticate, got.Body, w.Status, w.WWWAuthenticate, w.Body)
		}
	}
	for name := range want {
		if _, ok := answers[name]; !ok {
			t.Errorf("%s: in %s but no longer sent (run with -update)", name, cataloguePath)
		}
	}
	t.Errorf("%s differs from this run; if the change is intended, run with -update and review the diff", cataloguePath)
}

// checkHostile sends c and checks what does not depend on the golden file:
// the status, the shape of the body, the headers that go with the status.
func checkHostile(t *testing.T, s *phonesd, c hostile) goldenAnswer {
	t.Helper()
	r := sendHostile(t, s, c)
	ans := goldenAnswer{Status: r.status, Body: r.body}
	if r.status != c.status {
		t.Errorf("%s: status %d %s; want %d", c.name, r.status, r.body, c.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q; want application/json", c.name, ct)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Errorf("%s: body %q is not a JSON object", c.name, r.body)
		ans.Body = json.RawMessage(strconv.Quote(string(r.body)))
		return ans
	}
	msg, _ := body["message"].(string)
	switch {
	case msg == "":
		t.Errorf("%s: body %s; want a message", c.name, r.body)
	case r.status == http.StatusBadRequest && (len(body) != 2 || body["field"] != c.field):
		t.Errorf("%s: body %s; want {message, field: %q}", c.name, r.body, c.field)
	case r.status != http.StatusBadRequest && len(body) != 1:
		t.Errorf("%s: body %s; want {message}", c.name, r.body)
	}
	if r.status == http.StatusUnauthorized {
		ans.WWWAuthenticate = r.header.Get("WWW-Authenticate")
		want := `Bearer realm="phonesd"`
		if sentBearer(c) {
			want += `, error="invalid_token"`
		}
		if ans.WWWAuthenticate != want {
			t.Errorf("%s: WWW-Authenticate %q; want %q", c.name, ans.WWWAuthenticate, want)
		}
	}
	return ans
}

// sentBearer reports whether c sends exactly one Bearer credential.
func sentBearer(c hostile) bool {
	n, bearer := 0, false
	for _, h := range c.headers {
		if strings.EqualFold(h[0], "Authorization") {
			n++
			scheme, token, _ := strings.Cut(h[1], " ")
			bearer = strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != ""
		}
	}
	return n == 1 && bearer
}

func sendHostile(t *testing.T, s *phonesd, c hostile) response {
	t.Helper()
	path, method := c.path, c.method
	if path == "" {
		path = "/accounts/v1/accounts/1/phones"
	}
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader = strings.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(body) // hides the length: sent chunked
	}
	req, err := http.NewRequest(method, s.base+path, body)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	for _, h := range c.headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// checkNothingStored lists every account a case named and reads the events
// file: both must be empty. Then one valid create shows that both checks
// would have seen a stored phone.
func checkNothingStored(t *testing.T, s *phonesd, cases []hostile) {
	t.Helper()
	accounts := map[string]bool{"1": true, "2": true}
	for _, c := range cases {
		if segs := strings.Split(c.path, "/"); len(segs) > 4 {
			if n, err := strconv.ParseInt(segs[4], 10, 64); err == nil && n > 0 && strconv.FormatInt(n, 10) == segs[4] {
				accounts[segs[4]] = true
			}
		}
	}
	list := func(account string) string {
		r := s.do(http.MethodGet, "/accounts/v1/accounts/"+account+"/phones", "", bearer(s.token))
		if r.status != http.StatusOK {
			t.Fatalf("list account %s: status %d %s", account, r.status, r.body)
		}
		return string(r.body)
	}
	for account := range accounts {
		if got := list(account); got != `{"items":[]}` {
			t.Errorf("account %s after the catalogue: %s; want no phones", account, got)
		}
	}
	if evs := s.delivered(); len(evs) != 0 {
		t.Errorf("%d events after the catalogue; want none: %v", len(evs), evs)
	}
	createdID(t, s.create(1, okBody))
	if got := list("1"); !strings.Contains(got, `"number":"912345678"`) {
		t.Errorf("account 1 after a valid create: %s; want its phone", got)
	}
	s.events(1)
}

// foreignKeys are keys that are not in the service's key set.
type foreignKeys struct {
	rsa, rsa1024 *rsa.PrivateKey
	p256         *ecdsa.PrivateKey
}

var otherKeys = sync.OnceValues(func() (foreignKeys, error) {
	var k foreignKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return k, err
	}
	if k.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		return k, err
	}
	k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k, err
})

// forge signs claims (base claims with edits) with any algorithm, key and
// kid ("" for none).
func forge(t *testing.T, s *phonesd, alg jose.SignatureAlgorithm, key any, kid string, edits claims) string {
	t.Helper()
	c := s.keys.baseClaims()
	for name, v := range edits {
		if v == nil {
			delete(c, name)
			continue
		}
		c[name] = v
	}
	payload, err := json.Marshal(map[string]any(c))
	if err != nil {
		t.Fatal(err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// catalogue is every case, with tokens made for s's key set.
func catalogue(t *testing.T, s *phonesd) []hostile {
	t.Helper()
	auth := bearer(s.token)
	cases := slices.Concat(bodyCases(), pathAndHeaderCases(auth), mediaTypeCases(auth), tokenCases(t, s))
	for i := range cases {
		if cases[i].headers == nil {
			cases[i].headers = [][2]string{auth, jsonCT}
		}
	}
	return cases
}

// object builds a body from JSON members written as they are sent.
func object(members ...string) string { return "{" + strings.Join(members, ", ") + "}" }

const (
	num        = `"number": "912345678"`
	mobile     = `"type": "MOBILE"`
	badType    = `"type": "FAX"`
	longExt    = `"extension": "12345678901"`
	badRequest = http.StatusBadRequest
)

// nested is v inside depth levels of open and close.
func nested(open, close, v string, depth int) string {
	return strings.Repeat(open, depth) + v + strings.Repeat(close, depth)
}

// bodyCases break the body, field by field at each boundary of the contract.
// A value on the valid side of a boundary is paired with a later broken
// field, so the 400 on that field shows the value passed and nothing is stored.
// extension is last, so its valid side (10 code points) is left to
// TestCreatePhoneAcceptsBoundaryValues, which stores it.
func bodyCases() []hostile {
	pad := func(n int) string { return strings.Repeat("x", n) }
	exactly64K := object(num, badType, `"pad": "`+pad(64<<10-len(object(num, badType, `"pad": ""`)))+`"`)
	b := func(name, body, want string) hostile {
		return hostile{name: "body: " + name, body: body, status: badRequest, field: want}
	}
	return []hostile{
		// The body as a whole.
		b("empty", "", "body"),
		b("whitespace only", " \n\t ", "body"),
		b("not JSON", "number=1&type=MOBILE", "body"),
		b("JSON array", "["+object(num, mobile)+"]", "body"),
		b("JSON null", "null", "body"),
		b("JSON string", `"912345678"`, "body"),
		b("JSON number", "1", "body"),
		b("JSON true", "true", "body"),
		b("truncated in a value", `{"number": "912345678", "type": "MOB`, "body"),
		b("truncated after a value", `{"number": "912345678", "type": "MOBILE"`, "body"),
		b("truncated after a key", `{"number"`, "body"),
		b("only an open brace", `{`, "body"),
		b("trailing comma", `{"number": "912345678", "type": "MOBILE",}`, "body"),
		b("single quotes", `{'number': '912345678', 'type': 'MOBILE'}`, "body"),
		b("unquoted keys", `{number: "912345678", type: "MOBILE"}`, "body"),
		b("trailing garbage", object(num, mobile)+" x", "body"),
		b("trailing second object", object(num, mobile)+"{}", "body"),
		b("trailing bracket", object(num, mobile)+"]", "body"),
		b("trailing NUL", object(num, mobile)+"\x00", "body"),
		b("trailing comment", object(num, mobile)+" // note", "body"),
		b("leading garbage", "x"+object(num, mobile), "body"),
		b("byte order mark", "\xef\xbb\xbf"+object(num, mobile), "body"),
		b("UTF-16 with byte order mark", "\xfe\xff\x00{\x00}", "body"),
		b("invalid UTF-8 in a value", "{\"number\": \"91234\xff5678\", \"type\": \"MOBILE\"}", "body"),
		b("overlong UTF-8 slash", "{\"number\": \"1\xc0\xaf\", \"type\": \"MOBILE\"}", "body"),
		b("invalid UTF-8 in an unknown key", "{\"\xff\": 1, \"number\": \"1\", \"type\": \"MOBILE\"}", "body"),
		b("bad escape", `{"number": "\x31", "type": "MOBILE"}`, "body"),
		b("raw newline in a string", "{\"number\": \"9123\n45678\", \"type\": \"MOBILE\"}", "body"),
		b("10,000 nested arrays", nested("[", "]", "", 10000), "body"),
		// Nesting beyond the decoder's depth limit is refused as a whole, as
		// RFC 8259 allows, whichever field holds it.
		b("10,000 nested arrays in an unknown field", object(num, badType, `"x": `+nested("[", "]", "", 10000)), "body"),
		b("10,000 nested objects in an unknown field", object(num, badType, `"x": `+nested(`{"":`, "}", "1", 10000)), "body"),
		b("10,000 nested arrays as number", object(`"number": `+nested("[", "]", "1", 10000), mobile), "body"),
		b("10,000 nested arrays unclosed", object(num, mobile, `"x": `+strings.Repeat("[", 10000)), "body"),
		b("body of exactly 64 KiB", exactly64K, "type"),
		// number
		b("number missing", object(mobile), "number"),
		b("number null", object(`"number": null`, mobile), "number"),
		b("number integer", object(`"number": 912345678`, mobile), "number"),
		b("number boolean", object(`"number": true`, mobile), "number"),
		b("number array", object(`"number": ["912345678"]`, mobile), "number"),
		b("number object", object(`"number": {}`, mobile), "number"),
		b("number empty", object(`"number": ""`, mobile), "number"),
		b("number of 15 code points passes", object(`"number": "+55 (11) 9123-4"`, badType), "type"),
		b("number of 16 code points", object(`"number": "1234567890123456"`, mobile), "number"),
		b("number of 16 code points with a leading +", object(`"number": "+123456789012345"`, mobile), "number"),
		b("number Arabic-Indic digits", object(`"number": "١٢٣"`, mobile), "number"),
		b("number full-width digits", object(`"number": "１２３"`, mobile), "number"),
		b("number without a digit", object(`"number": "() -."`, mobile), "number"),
		b("number plus only", object(`"number": "+"`, mobile), "number"),
		b("number plus not first", object(`"number": "55+11"`, mobile), "number"),
		b("number letters", object(`"number": "call me"`, mobile), "number"),
		b("number escaped digits pass", object(`"number": "\u0039\u0031"`, badType), "type"),
		b("number escaped newline", object(`"number": "9123\n45678"`, mobile), "number"),
		b("number escaped NUL", object(`"number": "9123\u000045678"`, mobile), "number"),
		b("number lone surrogate", object(`"number": "9123\ud800"`, mobile), "number"),
		b("number repeated", object(num, mobile, `"number": "1"`), "number"),
		b("number repeated under an escaped key", object(num, mobile, `"num\u0062er": "1"`), "number"),
		// type
		b("type missing", object(num), "type"),
		b("type null", object(num, `"type": null`), "type"),
		b("type integer", object(num, `"type": 1`), "type"),
		b("type array", object(num, `"type": ["MOBILE"]`), "type"),
		b("type lower case", object(num, `"type": "mobile"`), "type"),
		b("type with a space", object(num, `"type": "MOBILE "`), "type"),
		b("type unknown", object(num, badType), "type"),
		b("type repeated", object(num, mobile, `"type": "MOBILE"`), "type"),
		// active
		b("active null", object(num, mobile, `"active": null`), "active"),
		b("active string", object(num, mobile, `"active": "true"`), "active"),
		b("active integer", object(num, mobile, `"active": 1`), "active"),
		b("active repeated", object(num, mobile, `"active": true`, `"active": false`), "active"),
		// area_code
		b("area_code null", object(num, mobile, `"area_code": null`), "area_code"),
		b("area_code string", object(num, mobile, `"area_code": "11"`), "area_code"),
		b("area_code array", object(num, mobile, `"area_code": [11]`), "area_code"),
		b("area_code 0 passes", object(num, mobile, `"area_code": 0`, longExt), "extension"),
		b("area_code negative zero passes", object(num, mobile, `"area_code": -0`, longExt), "extension"),
		b("area_code 2147483647 passes", object(num, mobile, `"area_code": 2147483647`, longExt), "extension"),
		b("area_code 2147483648", object(num, mobile, `"area_code": 2147483648`), "area_code"),
		b("area_code -1", object(num, mobile, `"area_code": -1`), "area_code"),
		b("area_code max int64", object(num, mobile, `"area_code": 9223372036854775807`), "area_code"),
		b("area_code beyond int64", object(num, mobile, `"area_code": 9223372036854775808`), "area_code"),
		b("area_code 30 digits", object(num, mobile, `"area_code": 999999999999999999999999999999`), "area_code"),
		b("area_code 11.0", object(num, mobile, `"area_code": 11.0`), "area_code"),
		b("area_code 11.5", object(num, mobile, `"area_code": 11.5`), "area_code"),
		b("area_code negative zero float", object(num, mobile, `"area_code": -0.0`), "area_code"),
		b("area_code 1e1", object(num, mobile, `"area_code": 1e1`), "area_code"),
		b("area_code 1E+1", object(num, mobile, `"area_code": 1E+1`), "area_code"),
		b("area_code 1e400", object(num, mobile, `"area_code": 1e400`), "area_code"),
		b("area_code leading zero", object(num, mobile, `"area_code": 011`), "body"),
		b("area_code leading plus", object(num, mobile, `"area_code": +11`), "body"),
		b("area_code hexadecimal", object(num, mobile, `"area_code": 0x11`), "body"),
		b("area_code NaN", object(num, mobile, `"area_code": NaN`), "body"),
		b("area_code Infinity", object(num, mobile, `"area_code": Infinity`), "body"),
		b("area_code repeated", object(num, mobile, `"area_code": 11`, `"area_code": 11`), "area_code"),
		// country_code
		b("country_code null", object(num, mobile, `"country_code": null`), "country_code"),
		b("country_code string", object(num, mobile, `"country_code": "55"`), "country_code"),
		b("country_code boolean", object(num, mobile, `"country_code": false`), "country_code"),
		b("country_code 0 passes", object(num, mobile, `"country_code": 0`, longExt), "extension"),
		b("country_code negative zero passes", object(num, mobile, `"country_code": -0`, longExt), "extension"),
		b("country_code 99999 passes", object(num, mobile, `"country_code": 99999`, longExt), "extension"),
		b("country_code 100000", object(num, mobile, `"country_code": 100000`), "country_code"),
		b("country_code -1", object(num, mobile, `"country_code": -1`), "country_code"),
		b("country_code 55.0", object(num, mobile, `"country_code": 55.0`), "country_code"),
		b("country_code 5.5e1", object(num, mobile, `"country_code": 5.5e1`), "country_code"),
		b("country_code beyond int64", object(num, mobile, `"country_code": 18446744073709551616`), "country_code"),
		b("country_code repeated", object(num, mobile, `"country_code": 55`, `"country_code": 1`), "country_code"),
		// extension
		b("extension null", object(num, mobile, `"extension": null`), "extension"),
		b("extension integer", object(num, mobile, `"extension": 12`), "extension"),
		b("extension array", object(num, mobile, `"extension": ["1"]`), "extension"),
		b("extension of 11 characters", object(num, mobile, longExt), "extension"),
		b("extension of 11 code points", object(num, mobile, `"extension": "ééééééééééé"`), "extension"),
		b("extension of 11 escaped code points", object(num, mobile, `"extension": "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"`), "extension"),
		b("extension of 11 emoji", object(num, mobile, `"extension": "`+strings.Repeat("📞", 11)+`"`), "extension"),
		b("extension with NUL", object(num, mobile, `"extension": "a\u0000b"`), "extension"),
		b("extension with tab", object(num, mobile, `"extension": "a\tb"`), "extension"),
		b("extension with DEL", object(num, mobile, `"extension": "a\u007fb"`), "extension"),
		b("extension with a C1 control", object(num, mobile, `"extension": "a\u0085b"`), "extension"),
		b("extension repeated", object(num, mobile, `"extension": "1"`, `"extension": "1"`), "extension"),
		// Order of fields.
		b("schema order beats document order", object(`"extension": 1`, `"country_code": -1`, num, mobile), "country_code"),
		b("a wrong type competes by schema order", object(`"area_code": "x"`, num, badType), "type"),
	}
}

// pathAndHeaderCases break the route, the path parameter and x-customer-id.
func pathAndHeaderCases(auth [2]string) []hostile {
	account := func(spelling string) hostile {
		return hostile{name: "accountId " + spelling, path: "/accounts/v1/accounts/" + spelling + "/phones", body: okBody, status: badRequest, field: "accountId"}
	}
	customer := func(name string, values ...string) hostile {
		c := hostile{name: "x-customer-id " + name, body: okBody, headers: [][2]string{auth, jsonCT}, status: badRequest, field: "x-customer-id"}
		for _, v := range values {
			c.headers = append(c.headers, [2]string{"X-Customer-Id", v})
		}
		return c
	}
	route := func(name, method, path string, status int) hostile {
		return hostile{name: "route " + name, method: method, path: path, body: okBody, status: status}
	}
	cases := []hostile{
		account("0"), account("-1"), account("+1"), account("01"), account("1.0"), account("1e3"), account("0x1"),
		account("9223372036854775808"), account("99999999999999999999"), account("abc"), account("%31"),
		account("%2531"), account("1%2F..%2F2"), account("%2e%2e"), account("%201"), account("1%00"),
		account("%EF%BC%91"), account("1;x=1"), account("1,2"),
		customer("0", "0"), customer("01", "01"), customer("-1", "-1"), customer("+1", "+1"), customer("1.5", "1.5"),
		customer("9223372036854775808", "9223372036854775808"), customer("abc", "abc"), customer("empty", ""),
		customer("list", "1, 2"), customer("repeated", "1", "2"),
		route("PUT", http.MethodPut, "/accounts/v1/accounts/1/phones", http.StatusMethodNotAllowed),
		route("DELETE", http.MethodDelete, "/accounts/v1/accounts/1/phones", http.StatusMethodNotAllowed),
		route("POST on a phone", http.MethodPost, "/accounts/v1/accounts/1/phones/1", http.StatusMethodNotAllowed),
		route("POST on ..", http.MethodPost, "/accounts/v1/accounts/1/phones/..", http.StatusMethodNotAllowed),
		route("trailing slash", http.MethodPost, "/accounts/v1/accounts/1/phones/", http.StatusNotFound),
		route("empty accountId", http.MethodPost, "/accounts/v1/accounts//phones", http.StatusNotFound),
		route("upper case", http.MethodPost, "/accounts/v1/accounts/1/PHONES", http.StatusNotFound),
		route("escaped letter", http.MethodPost, "/accounts/v1/accounts/1/phone%73", http.StatusNotFound),
		route("escaped slash", http.MethodPost, "/accounts/v1/accounts%2F1/phones", http.StatusNotFound),
		route("singular", http.MethodPost, "/accounts/v1/accounts/1/phone", http.StatusNotFound),
		route("other version", http.MethodPost, "/accounts/v2/accounts/1/phones", http.StatusNotFound),
	}
	return cases
}

// mediaTypeCases break the media type and the size limit.
func mediaTypeCases(auth [2]string) []hostile {
	huge := `{"number": "912345678", "type": "MOBILE", "pad": "` + strings.Repeat("x", 64<<10) + `"}`
	media := func(ct string) hostile {
		return hostile{name: "Content-Type " + ct, body: okBody, headers: [][2]string{auth, {"Content-Type", ct}}, status: http.StatusUnsupportedMediaType}
	}
	cases := []hostile{
		media("text/plain"), media("application/xml"), media("application/x-www-form-urlencoded"),
		media("multipart/form-data; boundary=x"), media("application/json; charset=latin1"), media("application/json; charset=utf-16"),
		media("application/jsonx"), media("application/json+xml"), media("json"), media("text/json"), media("*/*"), media("application/*"),
		media("application/json;;="), media("application/json; charset"),
		{name: "Content-Type repeated", body: okBody, headers: [][2]string{auth, {"Content-Type", "application/json"}, {"Content-Type", "application/json"}}, status: http.StatusUnsupportedMediaType},
		{name: "Content-Type application/problem+json reaches the body", body: "[]", headers: [][2]string{auth, {"Content-Type", "application/problem+json"}}, status: badRequest, field: "body"},
		{name: "size: 64 KiB and 1 byte", body: huge[:64<<10+1], status: http.StatusRequestEntityTooLarge},
		{name: "size: 128 KiB", body: huge + strings.Repeat(" ", 64<<10), status: http.StatusRequestEntityTooLarge},
		{name: "size: over 64 KiB chunked", body: huge, chunked: true, status: http.StatusRequestEntityTooLarge},
		{name: "size: over 64 KiB of text/plain", body: huge, headers: [][2]string{auth, {"Content-Type", "text/plain"}}, status: http.StatusUnsupportedMediaType},
	}
	return cases
}

// tokenCases forge, tamper with and misuse bearer tokens.
func tokenCases(t *testing.T, s *phonesd) []hostile {
	t.Helper()
	k := s.keys
	other, err := otherKeys()
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	now := time.Now()
	b64 := base64.RawURLEncoding.EncodeToString
	valid := s.token
	parts := strings.Split(valid, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string { // changes a middle character of s
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	signed := func(edits claims) string { return k.token(t, edits) }
	tok := func(name, token string, status int) hostile {
		return hostile{name: "token: " + name, body: okBody, headers: [][2]string{{"Authorization", "Bearer " + token}, jsonCT}, status: status}
	}
	raw := func(name string, status int, authorization ...string) hostile {
		c := hostile{name: "token: " + name, body: okBody, headers: [][2]string{jsonCT}, status: status}
		for _, a := range authorization {
			c.headers = append(c.headers, [2]string{"Authorization", a})
		}
		return c
	}
	const denied = http.StatusUnauthorized
	cases := []hostile{
		raw("none", denied),
		raw("empty bearer", denied, "Bearer "),
		raw("Basic scheme", denied, "Basic dXNlcjpwYXNz"),
		raw("scheme only", denied, "Bearer"),
		raw("token without a scheme", denied, valid),
		raw("two Authorization headers", denied, "Bearer "+valid, "Bearer "+valid),
		tok("alg none", b64([]byte(`{"alg":"none","typ":"JWT","kid":"`+k.kid+`"}`))+"."+parts[1]+".", denied),
		tok("alg none with the signature kept", b64([]byte(`{"alg":"none","typ":"JWT","kid":"`+k.kid+`"}`))+"."+parts[1]+"."+parts[2], denied),
		tok("alg NONE", b64([]byte(`{"alg":"NONE","kid":"`+k.kid+`"}`))+"."+parts[1]+".", denied),
		tok("HS256 keyed with the public key PEM", forge(t, s, jose.HS256, pubPEM, k.kid, nil), denied),
		tok("HS512 keyed with the public key PEM", forge(t, s, jose.HS512, pubPEM, k.kid, nil), denied),
		tok("HS256 keyed with the public key DER", forge(t, s, jose.HS256, pubDER, k.kid, nil), denied),
		tok("PS256 on a key pinned to RS256", forge(t, s, jose.PS256, k.key, k.kid, nil), denied),
		tok("ES256 under the RSA key's kid", forge(t, s, jose.ES256, other.p256, k.kid, nil), denied),
		tok("unknown kid", forge(t, s, jose.RS256, k.key, "no-such-key", nil), denied),
		tok("kid of a key not in the set", forge(t, s, jose.RS256, other.rsa, "test-key-2", nil), denied),
		tok("missing kid", forge(t, s, jose.RS256, k.key, "", nil), denied),
		tok("same kid, another RSA-2048 key", forge(t, s, jose.RS256, other.rsa, k.kid, nil), denied),
		tok("same kid, an RSA-1024 key", forge(t, s, jose.RS256, other.rsa1024, k.kid, nil), denied),
		tok("tampered header", b64([]byte(`{"alg":"RS256","kid":"`+k.kid+`","typ":"JWT","x":1}`))+"."+parts[1]+"."+parts[2], denied),
		tok("tampered payload", parts[0]+"."+b64(bytes.Replace(payload, []byte(testTenant), []byte("TN-test-2"), 1))+"."+parts[2], denied),
		tok("tampered signature", parts[0]+"."+parts[1]+"."+flip(parts[2], len(parts[2])/2), denied),
		tok("signature removed", parts[0]+"."+parts[1]+".", denied),
		tok("signature not base64url", parts[0]+"."+parts[1]+"."+parts[2][:10]+"+/="+parts[2][10:], denied),
		tok("only two parts", parts[0]+"."+parts[1], denied),
		tok("four parts", valid+"."+parts[2], denied),
		tok("not base64url", "%%%.%%%.%%%", denied),
		tok("oversized (9 KiB)", signed(claims{"pad": strings.Repeat("x", 9<<10)}), denied),
		tok("expired beyond leeway", signed(claims{"exp": now.Add(-2 * time.Minute).Unix()}), denied),
		tok("no exp", signed(claims{"exp": nil}), denied),
		tok("exp not a number", signed(claims{"exp": "tomorrow"}), denied),
		tok("nbf in the future", signed(claims{"nbf": now.Add(time.Hour).Unix()}), denied),
		tok("iat in the future", signed(claims{"iat": now.Add(time.Hour).Unix()}), denied),
		tok("no iat, nbf a year ago, exp in 23 hours", signed(claims{"iat": nil, "nbf": now.Add(-365 * 24 * time.Hour).Unix(), "exp": now.Add(23 * time.Hour).Unix()}), denied),
		tok("wrong iss", signed(claims{"iss": "https://evil.test"}), denied),
		tok("no iss", signed(claims{"iss": nil}), denied),
		tok("wrong aud", signed(claims{"aud": "other"}), denied),
		tok("aud array without ours", signed(claims{"aud": []string{"other", "phonesd"}}), denied),
		tok("no aud", signed(claims{"aud": nil}), denied),
		tok("missing tenant_id", signed(claims{"tenant_id": nil}), denied),
		tok("tenant_id empty", signed(claims{"tenant_id": ""}), denied),
		tok("tenant_id of 65 characters", signed(claims{"tenant_id": strings.Repeat("T", 65)}), denied),
		tok("tenant_id not a string", signed(claims{"tenant_id": 42}), denied),
		tok("tenant_id with a control character", signed(claims{"tenant_id": "TN-\n1"}), denied),
		tok("tenant_id upper-case claim name", signed(claims{"tenant_id": nil, "TENANT_ID": testTenant}), denied),
		tok("account_id 01", signed(claims{"account_id": "01"}), denied),
		tok("account_id -1", signed(claims{"account_id": -1}), denied),
		tok("account_id 0", signed(claims{"account_id": 0}), denied),
		tok("account_id 1.5", signed(claims{"account_id": 1.5}), denied),
		tok("account_id beyond int64", signed(claims{"account_id": "9223372036854775808"}), denied),
		tok("uid 007", signed(claims{"uid": "007"}), denied),
		tok("account_id and uid of two accounts", signed(claims{"account_id": 1, "uid": 2}), denied),
		tok("account_id of another account", signed(claims{"account_id": 2}), http.StatusForbidden),
		tok("uid of another account", signed(claims{"uid": "2"}), http.StatusForbidden),
		tok("external_account_id only", signed(claims{"external_account_id": "ext-1"}), http.StatusForbidden),
		{name: "token: bound to another account, before the media type", body: okBody, headers: [][2]string{bearer(signed(claims{"account_id": 2})), {"Content-Type", "text/plain"}}, status: http.StatusForbidden},
		{name: "token: missing, before the path", path: "/accounts/v1/accounts/abc/phones", body: okBody, headers: [][2]string{jsonCT}, status: denied},
		{name: "token: forged, before the body", body: "[", headers: [][2]string{bearer(forge(t, s, jose.HS256, pubPEM, k.kid, nil)), jsonCT}, status: denied},
	}
	return cases
}
