package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCreatePhoneTokens(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		s := b.start(t, nil)
		k := s.keys
		now := time.Now()
		tok := func(edits claims) [][2]string { return [][2]string{bearer(k.token(t, edits)), jsonCT} }
		parts := strings.Split(s.token, ".")
		tampered := parts[0] + "." + parts[1] + "x." + parts[2]
		noneTok := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoidGVzdC1rZXktMSJ9." + parts[1] + "."
		cases := []rejected{
			{name: "no Authorization", headers: [][2]string{jsonCT}, body: okBody, status: 401},
			{name: "Basic scheme", headers: [][2]string{{"Authorization", "Basic dXNlcjpwYXNz"}, jsonCT}, body: okBody, status: 401},
			{name: "empty bearer", headers: [][2]string{{"Authorization", "Bearer "}, jsonCT}, body: okBody, status: 401},
			{name: "garbage", headers: [][2]string{bearer("not.a.jwt"), jsonCT}, body: okBody, status: 401},
			{name: "tampered payload", headers: [][2]string{bearer(tampered), jsonCT}, body: okBody, status: 401},
			{name: "alg none", headers: [][2]string{bearer(noneTok), jsonCT}, body: okBody, status: 401},
			{name: "two Authorization headers", headers: [][2]string{bearer(s.token), bearer(s.token), jsonCT}, body: okBody, status: 401},
			{name: "expired", headers: tok(claims{"exp": now.Add(-time.Minute).Unix()}), body: okBody, status: 401},
			{name: "no exp", headers: tok(claims{"exp": nil}), body: okBody, status: 401},
			{name: "not yet valid", headers: tok(claims{"nbf": now.Add(time.Hour).Unix()}), body: okBody, status: 401},
			{name: "wrong issuer", headers: tok(claims{"iss": "https://evil.test"}), body: okBody, status: 401},
			{name: "wrong audience", headers: tok(claims{"aud": "other"}), body: okBody, status: 401},
			{name: "no tenant", headers: tok(claims{"tenant_id": nil}), body: okBody, status: 401},
			{name: "tenant too long", headers: tok(claims{"tenant_id": strings.Repeat("T", 65)}), body: okBody, status: 401},
			{name: "account_id not canonical", headers: tok(claims{"account_id": "01"}), body: okBody, status: 401},
			{name: "token before path", path: "/accounts/v1/accounts/abc/phones", headers: [][2]string{jsonCT}, body: okBody, status: 401},
			{name: "account token, other account", path: "/accounts/v1/accounts/2/phones", headers: tok(claims{"account_id": 1}), body: okBody, status: 403},
			{name: "uid token, other account", path: "/accounts/v1/accounts/2/phones", headers: tok(claims{"uid": "1"}), body: okBody, status: 403},
			{name: "non-numeric uid", headers: tok(claims{"uid": "user-9"}), body: okBody, status: 401},
			{name: "uid with a leading space", headers: tok(claims{"uid": " 77"}), body: okBody, status: 401},
			{name: "typ not a JWT", headers: [][2]string{bearer(k.tokenTyped(t, "logout+jwt", nil)), jsonCT}, body: okBody, status: 401},
			{name: "lifetime over PHONES_JWT_MAX_TTL", headers: tok(claims{"exp": now.Add(25 * time.Hour).Unix()}), body: okBody, status: 401},
			{name: "tenant with a bidi override", headers: tok(claims{"tenant_id": "TN-\u202e1"}), body: okBody, status: 401},
			{name: "external account token", path: "/accounts/v1/accounts/1/phones", headers: tok(claims{"external_account_id": "ext-1"}), body: okBody, status: 403},
			{name: "path before account rule", path: "/accounts/v1/accounts/0/phones", headers: tok(claims{"account_id": 1}), body: okBody, status: 400, field: "accountId"},
			{name: "account rule before media type", path: "/accounts/v1/accounts/2/phones", headers: [][2]string{bearer(k.token(t, claims{"account_id": 1})), {"Content-Type", "text/plain"}}, body: okBody, status: 403},
		}
		checkRejected(t, s, cases, 0)
		r := s.do(http.MethodPost, "/accounts/v1/accounts/1/phones", okBody, jsonCT)
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("WWW-Authenticate %q; want Bearer", got)
		}
		for _, c := range []struct {
			name  string
			edits claims
		}{
			{"account_id matches", claims{"account_id": 77}},
			{"string account_id matches", claims{"account_id": "77"}},
			{"numeric uid matches", claims{"uid": 77}},
			{"aud array", claims{"aud": []string{"x", testAudience}}},
			{"expired within leeway", claims{"exp": now.Add(-10 * time.Second).Unix()}},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := s.do(http.MethodPost, "/accounts/v1/accounts/77/phones", `{"number": "`+time.Now().Format("150405.000000")+`", "type": "MOBILE"}`, tok(c.edits)...)
				createdID(t, r)
			})
		}
	})
}
