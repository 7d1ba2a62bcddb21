package auth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestVerify runs every case without a token cache, then with one, each
// token twice, so that an answer from the cache is checked against the
// table too.
func TestVerify(t *testing.T) {
	for _, size := range []int{0, 1000} {
		t.Run(fmt.Sprintf("cache %d", size), func(t *testing.T) { testVerify(t, size) })
	}
}

func testVerify(t *testing.T, cacheSize int) {
	k := keyring(t)
	srv := newJWKSServer(t, marshalJWKS(t, baseJWKS(k)))
	v := startVerifier(t, srv, newFakeClock(), func(c *Config) { c.CacheSize = cacheSize; c.MaxTTL = 24 * time.Hour })

	rs := func(edits map[string]any) string { return sign(t, jose.RS256, k.rsa, "rsa", claims(edits)) }
	at := func(d time.Duration) int64 { return testEpoch.Add(d).Unix() }
	base := Principal{Tenant: "TN-1", Subject: "user-1", Roles: []string{}, Origin: "API"}
	with := func(edit func(*Principal)) Principal {
		p := base
		edit(&p)
		return p
	}
	bound := func(account int64) Principal {
		return with(func(p *Principal) { p.AccountBound, p.Account = true, account })
	}

	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	b64 := base64.RawURLEncoding.EncodeToString
	valid := rs(nil)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64([]byte(`{"iss":"`+testIssuer+`","aud":"phonesd","exp":1900000000,"tenant_id":"TN-2"}`)) + "." + parts[2]
	algNone := b64([]byte(`{"alg":"none","kid":"rsa"}`)) + "." + parts[1] + "."

	tests := []struct {
		name    string
		token   string
		want    Principal
		wantErr string // "" means the token must verify
	}{
		{name: "RS256", token: valid, want: base},
		{name: "RS384", token: sign(t, jose.RS384, k.rsa, "rsa", claims(nil)), want: base},
		{name: "RS512", token: sign(t, jose.RS512, k.rsa, "rsa", claims(nil)), want: base},
		{name: "PS256", token: sign(t, jose.PS256, k.rsa, "rsa", claims(nil)), want: base},
		{name: "ES256", token: sign(t, jose.ES256, k.p256, "p256", claims(nil)), want: base},
		{name: "ES384", token: sign(t, jose.ES384, k.p384, "p384", claims(nil)), want: base},
		{name: "EdDSA", token: sign(t, jose.EdDSA, k.ed, "ed", claims(nil)), want: base},
		{name: "RS256 with matching JWK alg", token: sign(t, jose.RS256, k.rsa, "rsa-rs256", claims(nil)), want: base},

		{name: "alg none", token: algNone, wantErr: "token algorithm not accepted"},
		{name: "HS256 keyed with the RSA public key", token: sign(t, jose.HS256, pubPEM, "rsa", claims(nil)), wantErr: "token algorithm not accepted"},
		{name: "ES512 not allowed", token: b64([]byte(`{"alg":"ES512","kid":"p256"}`)) + "." + parts[1] + "." + parts[2], wantErr: "token algorithm not accepted"},
		{name: "unknown kid", token: sign(t, jose.RS256, k.rsa, "nope", claims(nil)), wantErr: "unknown token signing key"},
		{name: "missing kid", token: sign(t, jose.RS256, k.rsa, "", claims(nil)), wantErr: "token has no key id"},
		{name: "tampered payload", token: tampered, wantErr: "invalid token signature"},
		{name: "signed by another key", token: sign(t, jose.RS256, k.rsa1024, "rsa", claims(nil)), wantErr: "invalid token signature"},
		{name: "key type does not fit alg", token: sign(t, jose.ES256, k.p256, "rsa", claims(nil)), wantErr: "invalid token signature"},
		{name: "JWK alg mismatch", token: sign(t, jose.PS256, k.rsa, "rsa-rs256", claims(nil)), wantErr: "token algorithm does not match its key"},
		{name: "JWK alg mismatch ES256 key", token: sign(t, jose.ES384, k.p384, "p256", claims(nil)), wantErr: "token algorithm does not match its key"},
		{name: "RSA-1024 key refused", token: sign(t, jose.RS256, k.rsa1024, "weak", claims(nil)), wantErr: "unknown token signing key"},
		{name: "key for encryption only", token: sign(t, jose.ES256, k.p256, "enc-only", claims(nil)), wantErr: "unknown token signing key"},
		{name: "oversize token", token: rs(map[string]any{"pad": strings.Repeat("x", 8<<10)}), wantErr: "token too large"},
		{name: "garbage", token: "not.a.token", wantErr: "malformed token"},

		{name: "typ JWT lower-case", token: signTyped(t, "jwt", claims(nil)), want: base},
		{name: "typ at+jwt", token: signTyped(t, "at+jwt", claims(nil)), want: base},
		{name: "typ AT+JWT", token: signTyped(t, "AT+JWT", claims(nil)), want: base},
		{name: "typ application/at+jwt", token: signTyped(t, "application/at+jwt", claims(nil)), want: base},
		{name: "typ absent", token: signTyped(t, nil, claims(nil)), want: base},
		{name: "typ logout+jwt", token: signTyped(t, "logout+jwt", claims(nil)), wantErr: "token type not accepted"},
		{name: "typ JWS", token: signTyped(t, "JWS", claims(nil)), wantErr: "token type not accepted"},
		{name: "typ empty", token: signTyped(t, "", claims(nil)), wantErr: "token type not accepted"},
		{name: "typ application/", token: signTyped(t, "application/", claims(nil)), wantErr: "token type not accepted"},
		{name: "typ a number", token: signTyped(t, 1, claims(nil)), wantErr: "token type not accepted"},

		{name: "lifetime of 24h", token: rs(map[string]any{"exp": at(24 * time.Hour)}), want: base},
		{name: "lifetime over 24h", token: rs(map[string]any{"exp": at(24*time.Hour + time.Second)}), wantErr: "token lifetime exceeds the limit"},
		{name: "lifetime counted from iat", token: rs(map[string]any{"iat": at(-time.Hour), "exp": at(23*time.Hour + time.Second)}), wantErr: "token lifetime exceeds the limit"},
		{name: "no iat: lifetime counted from now", token: rs(map[string]any{"iat": nil, "exp": at(24 * time.Hour)}), want: base},
		{name: "no iat: over 24h from now, beyond leeway", token: rs(map[string]any{"iat": nil, "exp": at(24*time.Hour + 31*time.Second)}), wantErr: "token lifetime exceeds the limit"},
		{name: "no iat: lifetime counted from nbf", token: rs(map[string]any{"iat": nil, "nbf": at(-365 * 24 * time.Hour), "exp": at(23 * time.Hour)}), wantErr: "token lifetime exceeds the limit"},
		{name: "no iat: 24h from nbf", token: rs(map[string]any{"iat": nil, "nbf": at(-time.Hour), "exp": at(23 * time.Hour)}), want: base},
		{name: "no iat: over 24h from nbf", token: rs(map[string]any{"iat": nil, "nbf": at(-time.Hour), "exp": at(23*time.Hour + time.Second)}), wantErr: "token lifetime exceeds the limit"},
		{name: "nbf long before iat: lifetime counted from iat", token: rs(map[string]any{"nbf": at(-365 * 24 * time.Hour), "exp": at(23 * time.Hour)}), want: base},
		{name: "empty", token: "", wantErr: "malformed token"},

		{name: "expired beyond leeway", token: rs(map[string]any{"exp": at(-31 * time.Second)}), wantErr: "token expired"},
		{name: "expired within leeway", token: rs(map[string]any{"exp": at(-20 * time.Second)}), want: base},
		{name: "nbf in the future", token: rs(map[string]any{"nbf": at(time.Minute)}), wantErr: "token not yet valid"},
		{name: "nbf within leeway", token: rs(map[string]any{"nbf": at(20 * time.Second)}), want: base},
		{name: "iat far in the future", token: rs(map[string]any{"iat": at(time.Hour)}), wantErr: "token issued in the future"},
		{name: "missing exp", token: rs(map[string]any{"exp": nil}), wantErr: "token has no expiry"},
		{name: "exp not a number", token: rs(map[string]any{"exp": "soon"}), wantErr: "malformed token claims"},
		{name: "wrong iss", token: rs(map[string]any{"iss": "https://evil.example"}), wantErr: "token issuer not accepted"},
		{name: "missing iss", token: rs(map[string]any{"iss": nil}), wantErr: "token issuer not accepted"},
		{name: "wrong aud", token: rs(map[string]any{"aud": "other"}), wantErr: "token audience not accepted"},
		{name: "missing aud", token: rs(map[string]any{"aud": nil}), wantErr: "token audience not accepted"},
		{name: "aud array containing ours", token: rs(map[string]any{"aud": []string{"other", testAudience}}), want: base},
		{name: "aud array without ours", token: rs(map[string]any{"aud": []string{"other"}}), wantErr: "token audience not accepted"},
		{name: "claim names are case-sensitive", token: rs(map[string]any{"tenant_id": nil, "TENANT_ID": "TN-1"}), wantErr: "invalid tenant_id claim"},

		{name: "tenant missing", token: rs(map[string]any{"tenant_id": nil}), wantErr: "invalid tenant_id claim"},
		{name: "tenant empty", token: rs(map[string]any{"tenant_id": ""}), wantErr: "invalid tenant_id claim"},
		{name: "tenant not a string", token: rs(map[string]any{"tenant_id": 42}), wantErr: "invalid tenant_id claim"},
		{name: "tenant null", token: rs(map[string]any{"tenant_id": rawJSON("null")}), wantErr: "invalid tenant_id claim"},
		{name: "tenant 65 chars", token: rs(map[string]any{"tenant_id": strings.Repeat("a", 65)}), wantErr: "invalid tenant_id claim"},
		{name: "tenant 64 chars", token: rs(map[string]any{"tenant_id": strings.Repeat("a", 64)}), want: with(func(p *Principal) { p.Tenant = strings.Repeat("a", 64) })},
		{name: "tenant 64 code points", token: rs(map[string]any{"tenant_id": strings.Repeat("é", 64)}), want: with(func(p *Principal) { p.Tenant = strings.Repeat("é", 64) })},
		{name: "tenant with control char", token: rs(map[string]any{"tenant_id": "TN-\n1"}), wantErr: "invalid tenant_id claim"},
		{name: "tenant with DEL", token: rs(map[string]any{"tenant_id": "TN-\u007f1"}), wantErr: "invalid tenant_id claim"},
		{name: "tenant with a C1 control", token: rs(map[string]any{"tenant_id": "TN-\u00851"}), wantErr: "invalid tenant_id claim"},
		{name: "tenant with a zero-width space", token: rs(map[string]any{"tenant_id": "TN-\u200b1"}), wantErr: "invalid tenant_id claim"},
		{name: "tenant with a right-to-left mark", token: rs(map[string]any{"tenant_id": "TN-\u200f1"}), wantErr: "invalid tenant_id claim"},
		{name: "tenant with a bidi override", token: rs(map[string]any{"tenant_id": "TN-\u202e1"}), wantErr: "invalid tenant_id claim"},
		{name: "tenant with a bidi isolate", token: rs(map[string]any{"tenant_id": "TN-\u20661"}), wantErr: "invalid tenant_id claim"},
		{name: "tenant with a byte order mark", token: rs(map[string]any{"tenant_id": "\ufeffTN-1"}), wantErr: "invalid tenant_id claim"},
		{name: "tenant with lone surrogate", token: rs(map[string]any{"tenant_id": rawJSON(`"TN-\ud800"`)}), wantErr: "invalid tenant_id claim"},

		{name: "account_id number", token: rs(map[string]any{"account_id": 42}), want: bound(42)},
		{name: "account_id string", token: rs(map[string]any{"account_id": "42"}), want: bound(42)},
		{name: "account_id max int64", token: rs(map[string]any{"account_id": rawJSON("9223372036854775807")}), want: bound(9223372036854775807)},
		{name: "account_id leading zeros", token: rs(map[string]any{"account_id": "007"}), wantErr: "invalid account_id claim"},
		{name: "account_id negative string", token: rs(map[string]any{"account_id": "-1"}), wantErr: "invalid account_id claim"},
		{name: "account_id negative number", token: rs(map[string]any{"account_id": -1}), wantErr: "invalid account_id claim"},
		{name: "account_id zero", token: rs(map[string]any{"account_id": 0}), wantErr: "invalid account_id claim"},
		{name: "account_id zero string", token: rs(map[string]any{"account_id": "0"}), wantErr: "invalid account_id claim"},
		{name: "account_id fraction", token: rs(map[string]any{"account_id": 1.5}), wantErr: "invalid account_id claim"},
		{name: "account_id exponent", token: rs(map[string]any{"account_id": rawJSON("1e3")}), wantErr: "invalid account_id claim"},
		{name: "account_id integral with fraction", token: rs(map[string]any{"account_id": rawJSON("42.0")}), wantErr: "invalid account_id claim"},
		{name: "account_id not numeric", token: rs(map[string]any{"account_id": "abc"}), wantErr: "invalid account_id claim"},
		{name: "account_id plus sign", token: rs(map[string]any{"account_id": "+42"}), wantErr: "invalid account_id claim"},
		{name: "account_id empty string", token: rs(map[string]any{"account_id": ""}), wantErr: "invalid account_id claim"},
		{name: "account_id overflow", token: rs(map[string]any{"account_id": rawJSON("9223372036854775808")}), wantErr: "invalid account_id claim"},
		{name: "account_id overflow string", token: rs(map[string]any{"account_id": "9223372036854775808"}), wantErr: "invalid account_id claim"},
		{name: "account_id bool", token: rs(map[string]any{"account_id": true}), wantErr: "invalid account_id claim"},
		{name: "account_id null", token: rs(map[string]any{"account_id": rawJSON("null")}), wantErr: "invalid account_id claim"},
		{name: "account_id and uid of one account", token: rs(map[string]any{"account_id": 42, "uid": "42"}), want: bound(42)},
		{name: "account_id and uid of two accounts", token: rs(map[string]any{"account_id": 123, "uid": 124}), wantErr: "account_id and uid claims name different accounts"},
		{name: "account_id and uid of two accounts, as strings", token: rs(map[string]any{"account_id": "7", "uid": "42"}), wantErr: "account_id and uid claims name different accounts"},

		{name: "uid number", token: rs(map[string]any{"uid": 7}), want: bound(7)},
		{name: "uid numeric string", token: rs(map[string]any{"uid": "7"}), want: bound(7)},
		{name: "uid non-numeric string", token: rs(map[string]any{"uid": "user-42"}), wantErr: "invalid uid claim"},
		{name: "uid with a leading space", token: rs(map[string]any{"uid": " 123"}), wantErr: "invalid uid claim"},
		{name: "uid negative string", token: rs(map[string]any{"uid": "-123"}), wantErr: "invalid uid claim"},
		{name: "uid plus sign", token: rs(map[string]any{"uid": "+123"}), wantErr: "invalid uid claim"},
		{name: "uid empty string", token: rs(map[string]any{"uid": ""}), wantErr: "invalid uid claim"},
		{name: "uid full-width digits", token: rs(map[string]any{"uid": "１２３"}), wantErr: "invalid uid claim"},
		{name: "uid bool", token: rs(map[string]any{"uid": true}), wantErr: "invalid uid claim"},
		{name: "uid null", token: rs(map[string]any{"uid": rawJSON("null")}), wantErr: "invalid uid claim"},
		{name: "uid exponent", token: rs(map[string]any{"uid": rawJSON("1e3")}), wantErr: "invalid uid claim"},
		{name: "malformed uid beside account_id", token: rs(map[string]any{"account_id": 42, "uid": "user-42"}), wantErr: "invalid uid claim"},
		{name: "uid numeric string with leading zero", token: rs(map[string]any{"uid": "007"}), wantErr: "invalid uid claim"},
		{name: "uid zero", token: rs(map[string]any{"uid": 0}), wantErr: "invalid uid claim"},
		{name: "uid negative", token: rs(map[string]any{"uid": -3}), wantErr: "invalid uid claim"},
		{name: "uid fraction", token: rs(map[string]any{"uid": 7.5}), wantErr: "invalid uid claim"},
		{name: "uid overflow", token: rs(map[string]any{"uid": "99999999999999999999"}), wantErr: "invalid uid claim"},
		{name: "uid numeric beats external_account_id", token: rs(map[string]any{"uid": 7, "external_account_id": "ext"}), want: bound(7)},

		{name: "external_account_id only", token: rs(map[string]any{"external_account_id": "ext-1"}), want: bound(0)},
		{name: "external_account_id number", token: rs(map[string]any{"external_account_id": 5}), want: bound(0)},
		{name: "external_account_id with non-numeric uid", token: rs(map[string]any{"uid": "user-42", "external_account_id": "ext-1"}), wantErr: "invalid uid claim"},
		{name: "external_account_id null", token: rs(map[string]any{"external_account_id": rawJSON("null")}), want: base},

		{name: "subject absent", token: rs(map[string]any{"sub": nil}), want: with(func(p *Principal) { p.Subject = "" })},
		{name: "email", token: rs(map[string]any{"email": "a@example.com"}), want: with(func(p *Principal) { p.Email = "a@example.com" })},
		{name: "email not a string", token: rs(map[string]any{"email": 5}), want: base},
		{name: "roles", token: rs(map[string]any{"roles": []string{"admin", "viewer"}}), want: with(func(p *Principal) { p.Roles = []string{"admin", "viewer"} })},
		{name: "roles empty array", token: rs(map[string]any{"roles": []string{}}), want: base},
		{name: "roles a string", token: rs(map[string]any{"roles": "admin"}), want: base},
		{name: "roles mixed array", token: rs(map[string]any{"roles": []any{"admin", 1}}), want: base},
		{name: "roles with null element", token: rs(map[string]any{"roles": rawJSON(`["admin",null]`)}), want: base},
		{name: "roles null", token: rs(map[string]any{"roles": rawJSON("null")}), want: base},
		{name: "origin", token: rs(map[string]any{"origin": "PORTAL"}), want: with(func(p *Principal) { p.Origin = "PORTAL" })},
		{name: "origin not a string", token: rs(map[string]any{"origin": 3}), want: base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 {
				checkVerify(t, v, tt.token, tt.want, tt.wantErr)
			}
		})
	}
}

// checkVerify verifies token and checks the principal or the error.
func checkVerify(t *testing.T, v *Verifier, token string, want Principal, wantErr string) {
	t.Helper()
	got, err := v.Verify(context.Background(), token)
	if wantErr != "" {
		var verr *Error
		if !errors.As(err, &verr) {
			t.Fatalf("Verify: got error %v (%T); want *Error %q", err, err, wantErr)
		}
		if verr.Message != wantErr {
			t.Errorf("Verify: got message %q; want %q", verr.Message, wantErr)
		}
		if token != "" && strings.Contains(verr.Message, token) {
			t.Errorf("Verify: message %q contains the token", verr.Message)
		}
		return
	}
	if err != nil {
		t.Fatalf("Verify: got error %v; want nil", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Verify: got %+v; want %+v", got, want)
	}
}

func TestMayAccess(t *testing.T) {
	tests := []struct {
		name    string
		p       Principal
		account int64
		want    bool
	}{
		{name: "tenant-wide token", p: Principal{}, account: 42, want: true},
		{name: "own account", p: Principal{AccountBound: true, Account: 42}, account: 42, want: true},
		{name: "other account", p: Principal{AccountBound: true, Account: 42}, account: 43, want: false},
		{name: "unresolved account vs 1", p: Principal{AccountBound: true}, account: 1, want: false},
		{name: "unresolved account vs 0", p: Principal{AccountBound: true}, account: 0, want: false},
		{name: "unresolved account vs max", p: Principal{AccountBound: true}, account: 9223372036854775807, want: false},
		{name: "unresolved account vs negative", p: Principal{AccountBound: true}, account: -1, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.MayAccess(tt.account); got != tt.want {
				t.Errorf("MayAccess(%d): got %v; want %v", tt.account, got, tt.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	err := error(&Error{Message: "token expired"})
	if got, want := err.Error(), "token expired"; got != want {
		t.Errorf("Error(): got %q; want %q", got, want)
	}
}
