package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/phonesd/phonesd/internal/auth"
)

// The fuzz targets here hold the Verifier to an independent implementation,
// golang-jwt, configured alike: the same keys by kid, the same algorithms,
// issuer, audience, required exp, leeway and clock. The Verifier may be
// stricter than the reference, never more lenient.

const (
	fuzzIssuer   = "https://issuer.fuzz"
	fuzzAudience = "phonesd"
	fuzzLeeway   = 30 * time.Second
)

// fuzzNow is the clock of both verifiers. Its half second keeps a whole-second
// exp, nbf or iat off the exact edge of the leeway, where the two libraries
// round the same instant differently (go-jose accepts a token at exp+leeway,
// golang-jwt refuses it); that instant never matters to a real clock.
var fuzzNow = time.Unix(1_700_000_000, 500_000_000)

var fuzzAlgs = []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}

// fuzzKey is a key of the trusted set: kid, the alg it is pinned to ("" for
// none), and its public half.
type fuzzKey struct {
	kid string
	alg string
	pub any
}

// fuzzKeyring is the trusted set and one key outside it.
type fuzzKeyring struct {
	rsa   *rsa.PrivateKey
	p256  *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	other ed25519.PrivateKey // not in the set
	set   []fuzzKey
}

// fuzzKeys derives the keys from fixed seeds, once per process: a token kept
// in testdata/fuzz then stays signed by a trusted key from one run to the
// next, so a crasher reproduces.
var fuzzKeys = sync.OnceValues(func() (*fuzzKeyring, error) {
	src := rand.New(rand.NewChaCha8([32]byte{'p', 'h', 'o', 'n', 'e', 's', 'd'}))
	k := &fuzzKeyring{}
	var err error
	if k.rsa, err = deterministicRSA(src, 2048); err != nil {
		return nil, err
	}
	for k.p256 == nil {
		var d [32]byte
		fill(src, d[:])
		k.p256, _ = ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:]) // retried when d is out of range
	}
	var seed [ed25519.SeedSize]byte
	fill(src, seed[:])
	k.ed = ed25519.NewKeyFromSeed(seed[:])
	fill(src, seed[:])
	k.other = ed25519.NewKeyFromSeed(seed[:])
	k.set = []fuzzKey{
		{kid: "rsa", pub: &k.rsa.PublicKey},
		{kid: "rsa-rs256", alg: "RS256", pub: &k.rsa.PublicKey},
		{kid: "p256", alg: "ES256", pub: &k.p256.PublicKey},
		{kid: "ed", alg: "EdDSA", pub: k.ed.Public()},
	}
	return k, nil
})

func fill(src *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(src.Uint32())
	}
}

// deterministicRSA builds an RSA key from primes drawn from src, since
// rsa.GenerateKey takes no seed.
func deterministicRSA(src *rand.Rand, bits int) (*rsa.PrivateKey, error) {
	prime := func() *big.Int {
		b := make([]byte, bits/16)
		for {
			fill(src, b)
			b[0] |= 0xc0 // two top bits set: p*q has exactly bits bits
			b[len(b)-1] |= 1
			if p := new(big.Int).SetBytes(b); p.ProbablyPrime(20) {
				return p
			}
		}
	}
	e := big.NewInt(65537)
	one := big.NewInt(1)
	for {
		p, q := prime(), prime()
		if p.Cmp(q) == 0 {
			continue
		}
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(e, phi)
		if d == nil {
			continue
		}
		key := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: int(e.Int64())},
			D:         d,
			Primes:    []*big.Int{p, q},
		}
		key.Precompute()
		if err := key.Validate(); err != nil {
			return nil, err
		}
		return key, nil
	}
}

func loadFuzzKeys(tb testing.TB) *fuzzKeyring {
	tb.Helper()
	k, err := fuzzKeys()
	if err != nil {
		tb.Fatalf("derive keys: %v", err)
	}
	return k
}

func newFuzzVerifier(tb testing.TB, k *fuzzKeyring) *auth.Verifier {
	tb.Helper()
	set := &jose.JSONWebKeySet{}
	for _, key := range k.set {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: key.pub, KeyID: key.kid, Algorithm: key.alg, Use: "sig"})
	}
	v, err := auth.NewVerifier(auth.Config{
		Keys:      set,
		Issuer:    fuzzIssuer,
		Audience:  fuzzAudience,
		Leeway:    fuzzLeeway,
		MaxTTL:    24 * time.Hour,
		CacheSize: 64, // small, so that fuzzing evicts as well
		Now:       func() time.Time { return fuzzNow },
	})
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// reference verifies with golang-jwt what the Verifier is configured to accept.
type reference struct {
	parser *jwt.Parser
	keys   map[string]fuzzKey
}

func newReference(k *fuzzKeyring) *reference {
	r := &reference{
		parser: jwt.NewParser(
			jwt.WithValidMethods(fuzzAlgs),
			jwt.WithIssuer(fuzzIssuer),
			jwt.WithAudience(fuzzAudience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(fuzzLeeway),
			jwt.WithTimeFunc(func() time.Time { return fuzzNow }),
			jwt.WithJSONNumber(),
		),
		keys: map[string]fuzzKey{},
	}
	for _, key := range k.set {
		r.keys[key.kid] = key
	}
	return r
}

func (r *reference) verify(token string) (jwt.MapClaims, error) {
	tok, err := r.parser.Parse(token, func(t *jwt.Token) (any, error) {
		kid, ok := t.Header["kid"].(string)
		if !ok {
			return nil, errors.New("no kid")
		}
		key, ok := r.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		if key.alg != "" && t.Method.Alg() != key.alg {
			return nil, fmt.Errorf("alg %s on a key pinned to %s", t.Method.Alg(), key.alg)
		}
		return key.pub, nil
	})
	if err != nil {
		return nil, err
	}
	return tok.Claims.(jwt.MapClaims), nil
}

// checkVerify runs both verifiers on token and fails when the Verifier
// accepts what the reference refuses, or reads the claims differently. The
// Verifier runs twice, so that its second answer may come from its cache:
// the two must be the same.
func checkVerify(t *testing.T, v *auth.Verifier, ref *reference, token string) {
	p, err := v.Verify(context.Background(), token)
	p2, err2 := v.Verify(context.Background(), token)
	if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(p, p2) {
		t.Fatalf("Verify(%q) answers %+v, %v then %+v, %v", token, p, err, p2, err2)
	}
	if err != nil {
		var ae *auth.Error
		if !errors.As(err, &ae) || ae.Message == "" {
			t.Fatalf("Verify(%q): error %v (%T); want an *auth.Error with a message", token, err, err)
		}
		return
	}
	if n := utf8.RuneCountInString(p.Tenant); n < 1 || n > 64 || !utf8.ValidString(p.Tenant) {
		t.Fatalf("Verify(%q): tenant %q of %d code points; want valid UTF-8 of 1 to 64", token, p.Tenant, n)
	}
	claims, err := ref.verify(token)
	if err != nil {
		t.Fatalf("Verify(%q) accepts %+v; golang-jwt refuses it: %v", token, p, err)
	}
	if got, _ := claims["tenant_id"].(string); got != p.Tenant {
		t.Fatalf("Verify(%q): tenant %q; golang-jwt reads %q", token, p.Tenant, got)
	}
	if a, u := claims["account_id"], claims["uid"]; a != nil && u != nil && fmt.Sprint(a) != fmt.Sprint(u) {
		t.Fatalf("Verify(%q) accepts account_id %v beside uid %v; want them to name one account", token, a, u)
	}
	bound, account := referenceAccount(claims)
	if bound != p.AccountBound || (p.Account != 0 && account != strconv.FormatInt(p.Account, 10)) || (p.AccountBound && p.Account == 0 && account != "") {
		t.Fatalf("Verify(%q): bound %v account %d; golang-jwt reads bound %v account %q", token, p.AccountBound, p.Account, bound, account)
	}
}

// referenceAccount reads the account a token is bound to as docs/api.md states
// the rule: account_id, else uid (the two, when both are present, name one
// account, which checkVerify checks); a token with only external_account_id is
// bound to an account phonesd cannot name (""). The caller checks that the
// text is the canonical decimal of the account the Verifier read.
func referenceAccount(c jwt.MapClaims) (bound bool, account string) {
	text := func(v any) (string, bool) {
		switch v := v.(type) {
		case json.Number:
			return v.String(), true
		case string:
			return v, true
		}
		return "", false
	}
	if v, ok := c["account_id"]; ok {
		s, _ := text(v)
		return true, s
	}
	if v, ok := c["uid"]; ok {
		s, _ := text(v)
		return true, s
	}
	if v, ok := c["external_account_id"]; ok && v != nil {
		return true, ""
	}
	return false, ""
}

// signCompact signs payload as a compact JWS with header (alg and kid added).
func signCompact(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid string, payload []byte) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatalf("new signer %s: %v", alg, err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		tb.Fatalf("sign %s: %v", alg, err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return token
}

// fuzzClaims returns a valid claim set with edits; a nil value deletes a claim.
func fuzzClaims(tb testing.TB, edits map[string]any) []byte {
	tb.Helper()
	c := map[string]any{
		"iss":       fuzzIssuer,
		"aud":       fuzzAudience,
		"sub":       "user-1",
		"iat":       fuzzNow.Unix(),
		"exp":       fuzzNow.Add(time.Hour).Unix(),
		"tenant_id": "TN-1",
	}
	for k, v := range edits {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		tb.Fatalf("marshal claims: %v", err)
	}
	return b
}

// FuzzVerify sends arbitrary bearer tokens to the Verifier: it never panics,
// refuses with an *auth.Error, and accepts only what golang-jwt accepts, with
// the same tenant and account.
func FuzzVerify(f *testing.F) {
	k := loadFuzzKeys(f)
	v := newFuzzVerifier(f, k)
	ref := newReference(k)
	b64 := base64.RawURLEncoding.EncodeToString
	at := func(d time.Duration) int64 { return fuzzNow.Add(d).Unix() }
	valid := fuzzClaims(f, nil)

	rsTok := signCompact(f, jose.RS256, k.rsa, "rsa", valid)
	parts := strings.Split(rsTok, ".")
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	seeds := []string{
		rsTok,
		signCompact(f, jose.RS384, k.rsa, "rsa", valid),
		signCompact(f, jose.RS512, k.rsa, "rsa", valid),
		signCompact(f, jose.PS256, k.rsa, "rsa", valid),
		signCompact(f, jose.RS256, k.rsa, "rsa-rs256", valid),
		signCompact(f, jose.ES256, k.p256, "p256", valid),
		signCompact(f, jose.EdDSA, k.ed, "ed", valid),
		// Refused: forged, tampered or misconfigured.
		b64([]byte(`{"alg":"none","kid":"rsa"}`)) + "." + parts[1] + ".",
		b64([]byte(`{"alg":"none","kid":"rsa"}`)) + "." + parts[1] + "." + parts[2],
		signCompact(f, jose.HS256, pubPEM, "rsa", valid),
		signCompact(f, jose.HS256, pubDER, "rsa-rs256", valid),
		signCompact(f, jose.HS512, pubPEM, "rsa", valid),
		signCompact(f, jose.PS256, k.rsa, "rsa-rs256", valid),
		signCompact(f, jose.ES256, k.p256, "rsa", valid),
		signCompact(f, jose.EdDSA, k.other, "ed", valid),
		signCompact(f, jose.EdDSA, k.ed, "", valid),
		signCompact(f, jose.EdDSA, k.ed, "nope", valid),
		parts[0] + "." + b64(fuzzClaims(f, map[string]any{"tenant_id": "TN-2"})) + "." + parts[2],
		b64([]byte(`{"alg":"RS256","kid":"rsa","typ":"JWT","x":1}`)) + "." + parts[1] + "." + parts[2],
		parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4] + "AAAA",
		parts[0] + "." + parts[1],
		parts[0] + "." + parts[1] + "." + parts[2] + ".",
		parts[0] + ".." + parts[2],
		"", ".", "..", "a.b.c", "not.a.token",
		// Correctly signed, refused for its claims.
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"exp": at(-31 * time.Second)})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"exp": at(-29 * time.Second)})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"exp": nil})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"nbf": at(time.Minute)})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"iat": at(time.Minute)})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"iss": "https://evil.fuzz"})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"aud": "other"})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"aud": []string{"other", fuzzAudience}})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"aud": []string{"other"}})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"tenant_id": nil})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"tenant_id": strings.Repeat("é", 65)})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"account_id": "01"})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"account_id": 42})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"uid": "7"})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"external_account_id": "ext-1"})),
		signCompact(f, jose.EdDSA, k.ed, "ed", fuzzClaims(f, map[string]any{"pad": strings.Repeat("x", 8<<10)})),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		checkVerify(t, v, ref, token)
	})
}

// FuzzVerifyClaims signs arbitrary claim sets with a trusted key, so that
// fuzzing reaches the claim rules: the Verifier never panics, and what it
// accepts golang-jwt accepts, with the same tenant (1 to 64 code points) and
// account.
func FuzzVerifyClaims(f *testing.F) {
	k := loadFuzzKeys(f)
	v := newFuzzVerifier(f, k)
	ref := newReference(k)
	at := func(d time.Duration) int64 { return fuzzNow.Add(d).Unix() }
	for _, edits := range []map[string]any{
		nil,
		{"tenant_id": strings.Repeat("a", 64)},
		{"tenant_id": strings.Repeat("é", 64)},
		{"tenant_id": strings.Repeat("a", 65)},
		{"tenant_id": ""},
		{"tenant_id": 42},
		{"tenant_id": "TN-\n1"},
		{"tenant_id": []string{"TN-1"}},
		{"account_id": 42},
		{"account_id": "42"},
		{"account_id": "01"},
		{"account_id": -1},
		{"account_id": 0},
		{"account_id": 1.5},
		{"account_id": true},
		{"uid": 7},
		{"uid": "7"},
		{"uid": "user-7"},
		{"uid": "007"},
		{"account_id": 42, "uid": "42"},
		{"account_id": 42, "uid": 43},
		{"external_account_id": "ext-1"},
		{"iat": nil, "nbf": at(-365 * 24 * time.Hour), "exp": at(23 * time.Hour)},
		{"email": "a@bank.test", "roles": []string{"crm"}, "origin": "CRM"},
		{"exp": at(-29 * time.Second)},
		{"exp": at(-31 * time.Second)},
		{"exp": "soon"},
		{"exp": 1e300},
		{"exp": float64(at(time.Hour)) + 0.75},
		{"nbf": at(29 * time.Second)},
		{"nbf": at(31 * time.Second)},
		{"iat": at(31 * time.Second)},
		{"aud": []any{"other", fuzzAudience}},
		{"aud": []any{fuzzAudience, 1}},
		{"iss": 1},
	} {
		f.Add(fuzzClaims(f, edits))
	}
	exp := strconv.FormatInt(at(time.Hour), 10)
	head := `{"iss":"` + fuzzIssuer + `","aud":"` + fuzzAudience + `","exp":` + exp
	for _, raw := range []string{
		head + `,"tenant_id":"TN-1","tenant_id":"TN-2"}`,
		head + `,"tenant\u005fid":"TN-1"}`,
		head + `,"TENANT_ID":"TN-1"}`,
		head + `,"tenant_id":"TN-\ud800"}`,
		head + ",\"tenant_id\":\"TN-\xff\"}",
		head + `,"tenant_id":"TN-1","account_id":9223372036854775807}`,
		head + `,"tenant_id":"TN-1","account_id":9223372036854775808}`,
		head + `,"tenant_id":"TN-1","account_id":1e3}`,
		head + `,"tenant_id":"TN-1","account_id":null}`,
		head + `,"tenant_id":"TN-1","uid":-0}`,
		head + `,"tenant_id":"TN-1","external_account_id":null}`,
		head + `,"tenant_id":"TN-1","nbf":null}`,
		head + `,"tenant_id":"TN-1","exp":null}`,
		head + `,"tenant_id":"TN-1"} trailing`,
		`{"iss":"` + fuzzIssuer + `","aud":"` + fuzzAudience + `","exp":4611686018427387904,"tenant_id":"TN-1"}`,
		`{"iss":"` + fuzzIssuer + `","aud":"` + fuzzAudience + `","exp":9223372036854775807,"tenant_id":"TN-1"}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, claims []byte) {
		checkVerify(t, v, ref, signCompact(t, jose.EdDSA, k.ed, "ed", claims))
	})
}

// TestVerifyRefusesNonCanonicalEncoding: RFC 7515 signs the header and
// payload segments as sent, so a token whose segments are not the canonical
// base64url of their bytes (line breaks inside, or unused low bits set in the
// last character) was not signed as sent and must be refused, as golang-jwt
// refuses it. One signed token must have one spelling.
func TestVerifyRefusesNonCanonicalEncoding(t *testing.T) {
	k := loadFuzzKeys(t)
	v := newFuzzVerifier(t, k)
	token := signCompact(t, jose.EdDSA, k.ed, "ed", fuzzClaims(t, nil))
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("Verify(canonical token): %v", err)
	}
	parts := strings.Split(token, ".")
	tests := []struct {
		name  string
		token string
	}{
		{"line feed in the payload", parts[0] + "." + parts[1][:8] + "\n" + parts[1][8:] + "." + parts[2]},
		{"carriage return in the header", parts[0][:8] + "\r" + parts[0][8:] + "." + parts[1] + "." + parts[2]},
		{"unused bits set in the header", flipUnusedBit(t, parts[0]) + "." + parts[1] + "." + parts[2]},
		{"unused bits set in the payload", parts[0] + "." + flipUnusedBit(t, parts[1]) + "." + parts[2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := v.Verify(context.Background(), tt.token); err == nil {
				t.Errorf("Verify(%q) = %+v; want an error", tt.token, p)
			}
		})
	}
}

// flipUnusedBit returns seg with the lowest unused bit of its last character
// set, which decodes to the same bytes.
func flipUnusedBit(t *testing.T, seg string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(seg)%4 == 0 {
		t.Fatalf("segment %q has no unused bits", seg)
	}
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	out := seg[:len(seg)-1] + string(alphabet[i^1])
	a, errA := base64.RawURLEncoding.DecodeString(seg)
	b, errB := base64.RawURLEncoding.DecodeString(out)
	if errA != nil || errB != nil || string(a) != string(b) {
		t.Fatalf("flipping the last bit of %q changes its bytes", seg)
	}
	return out
}

// TestVerifyRefusesNullTimeClaims: RFC 7519 makes nbf and iat NumericDates;
// null is none, so a token carrying one is malformed, as golang-jwt finds it.
func TestVerifyRefusesNullTimeClaims(t *testing.T) {
	k := loadFuzzKeys(t)
	v := newFuzzVerifier(t, k)
	exp := strconv.FormatInt(fuzzNow.Add(time.Hour).Unix(), 10)
	for _, name := range []string{"nbf", "iat"} {
		t.Run(name, func(t *testing.T) {
			claims := `{"iss":"` + fuzzIssuer + `","aud":"` + fuzzAudience + `","exp":` + exp + `,"tenant_id":"TN-1","` + name + `":null}`
			token := signCompact(t, jose.EdDSA, k.ed, "ed", []byte(claims))
			if p, err := v.Verify(context.Background(), token); err == nil {
				t.Errorf("Verify(%s) = %+v; want an error", claims, p)
			}
		})
	}
}
