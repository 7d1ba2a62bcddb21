// Package auth verifies bearer tokens against a JSON Web Key Set and issues
// development tokens.
package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DefaultLeeway is the clock leeway of a Config that sets none.
const DefaultLeeway = 30 * time.Second

const (
	maxTokenBytes = 8 << 10

	defaultRefreshInterval    = 10 * time.Minute
	defaultMinRefetchInterval = 5 * time.Second
	defaultHTTPTimeout        = 5 * time.Second
)

// Principal is the verified caller of a request.
type Principal struct {
	Tenant  string   // tenant_id claim (Pismo's org ID, e.g. "TN-...")
	Subject string   // sub claim, "" if absent
	Email   string   // email claim; "" when absent or not a string
	Roles   []string // roles claim; empty non-nil slice when absent or not an array of strings
	Origin  string   // origin claim; "API" when absent or not a string
	// AccountBound reports that the token is account-specific. Account is then its
	// account, or 0 when the token names an account phonesd cannot resolve
	// (external_account_id only): such a token may touch no account (fail closed).
	AccountBound bool
	Account      int64
}

// MayAccess reports whether p may touch the given account.
func (p Principal) MayAccess(account int64) bool {
	return !p.AccountBound || (p.Account != 0 && p.Account == account)
}

// Error is a verification failure whose Message is safe to send to the
// client (it never contains the token), and whose Reason, one of a few
// words, counts it in the metrics.
type Error struct {
	Reason  string
	Message string
}

// The failures of a verification. Each names a reason of its own except
// the claims', which share "claims".
var (
	errTooLarge       = &Error{"too_large", "token too large"}
	errMalformed      = &Error{"malformed", "malformed token"}
	errAlgorithm      = &Error{"algorithm", "token algorithm not accepted"}
	errType           = &Error{"type", "token type not accepted"}
	errNoKeyID        = &Error{"unknown_key", "token has no key id"}
	errUnknownKey     = &Error{"unknown_key", "unknown token signing key"}
	errKeyAlgorithm   = &Error{"algorithm", "token algorithm does not match its key"}
	errSignature      = &Error{"signature", "invalid token signature"}
	errMalformedClaim = &Error{"malformed", "malformed token claims"}
	errNoExpiry       = &Error{"expired", "token has no expiry"}
	errExpired        = &Error{"expired", "token expired"}
	errNotYetValid    = &Error{"not_yet_valid", "token not yet valid"}
	errIssuedFuture   = &Error{"not_yet_valid", "token issued in the future"}
	errIssuer         = &Error{"issuer", "token issuer not accepted"}
	errAudience       = &Error{"audience", "token audience not accepted"}
	errClaims         = &Error{"claims", "invalid token claims"}
	errLifetime       = &Error{"lifetime", "token lifetime exceeds the limit"}
	errTenant         = &Error{"claims", "invalid tenant_id claim"}
	errAccountID      = &Error{"claims", "invalid account_id claim"}
	errUID            = &Error{"claims", "invalid uid claim"}
	errAccountClash   = &Error{"claims", "account_id and uid claims name different accounts"}
)

// Error returns the client-safe message.
func (e *Error) Error() string { return e.Message }

// Config configures a Verifier. Exactly one of JWKSURL and Keys is set.
type Config struct {
	JWKSURL            string              // https, or http only when the host is loopback (localhost, 127.0.0.0/8, ::1)
	Keys               *jose.JSONWebKeySet // a fixed key set (development mode); no fetching
	Issuer             string              // required, checked against iss
	Audience           string              // required; aud may be a string or an array containing it
	Leeway             time.Duration       // for exp/nbf/iat; 0 means DefaultLeeway
	RefreshInterval    time.Duration       // 0 means 10m
	MinRefetchInterval time.Duration       // unknown-kid refetch at most this often; 0 means 5s
	// MaxTTL refuses tokens whose exp lies further than this beyond their
	// iat, else their nbf, else now (with Leeway); 0: no limit.
	MaxTTL time.Duration
	// CacheSize is how many verified tokens are kept; 0: none.
	CacheSize  int
	HTTPClient *http.Client     // nil means a client with a 5s timeout
	Logger     *slog.Logger     // nil means discard
	Now        func() time.Time // nil means time.Now (tests inject)
}

// Verifier checks bearer tokens against the current key set.
type Verifier struct {
	cfg   Config
	algs  []jose.SignatureAlgorithm
	keys  atomic.Pointer[keySet]
	cache *tokenCache // nil: every token is verified in full

	// mu guards the shared fetch state below.
	mu        sync.Mutex
	inflight  *fetchCall
	lastFetch time.Time

	retryBase time.Duration
	retryMax  time.Duration
}

// NewVerifier validates cfg and returns a Verifier; it does no I/O.
func NewVerifier(cfg Config) (*Verifier, error) {
	if (cfg.JWKSURL == "") == (cfg.Keys == nil) {
		return nil, errors.New("auth config: exactly one of JWKSURL and Keys must be set")
	}
	if cfg.JWKSURL != "" {
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil {
			return nil, errors.New("auth config: JWKSURL is not a valid URL")
		}
		if err := checkJWKSURL(u); err != nil {
			return nil, fmt.Errorf("auth config: JWKSURL: %w", err)
		}
	}
	if cfg.Issuer == "" {
		return nil, errors.New("auth config: Issuer is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("auth config: Audience is required")
	}
	if cfg.Leeway < 0 || cfg.RefreshInterval < 0 || cfg.MinRefetchInterval < 0 || cfg.MaxTTL < 0 || cfg.CacheSize < 0 {
		return nil, errors.New("auth config: Leeway, RefreshInterval, MinRefetchInterval, MaxTTL and CacheSize must not be negative")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = defaultRefreshInterval
	}
	if cfg.MinRefetchInterval == 0 {
		cfg.MinRefetchInterval = defaultMinRefetchInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Timeout: defaultHTTPTimeout,
			// A redirect must not downgrade the key source to plain http.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				return checkJWKSURL(req.URL)
			},
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}

	v := &Verifier{
		cfg: cfg,
		algs: []jose.SignatureAlgorithm{
			jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA,
		},
		cache:     newTokenCache(cfg.CacheSize),
		retryBase: time.Second,
		retryMax:  time.Minute,
	}
	if cfg.Keys != nil {
		ks := v.newKeySet(cfg.Keys.Keys)
		if len(ks.byKID) == 0 {
			return nil, errors.New("auth config: Keys holds no usable public signing key")
		}
		v.keys.Store(ks)
	}
	return v, nil
}

// checkJWKSURL allows https anywhere and http only where the traffic cannot
// leave the machine.
func checkJWKSURL(u *url.URL) error {
	host := u.Hostname()
	if host == "" {
		return errors.New("missing host")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if strings.EqualFold(host, "localhost") {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("http is allowed only for a loopback host")
	default:
		return errors.New("scheme must be https")
	}
}

// Ready reports whether a key set has been loaded.
func (v *Verifier) Ready() bool { return v.keys.Load() != nil }

// tokenClaims keeps the custom claims raw because their accepted shapes vary
// and a wrong shape must be told apart from an absent claim.
type tokenClaims struct {
	jwt.Claims
	Tenant            json.RawMessage `json:"tenant_id"`
	AccountID         json.RawMessage `json:"account_id"`
	UID               json.RawMessage `json:"uid"`
	ExternalAccountID json.RawMessage `json:"external_account_id"`
	Email             json.RawMessage `json:"email"`
	Roles             json.RawMessage `json:"roles"`
	Origin            json.RawMessage `json:"origin"`
}

func fail(e *Error) (Principal, error) { return Principal{}, e }

// canonicalCompact reports whether token is three segments of canonical
// base64url: only the alphabet, no padding, and zero unused bits in the last
// character. go-jose verifies the signature over a re-encoding of what it
// decoded, so without this check one signed token has many spellings that
// all verify, and anything keyed by the token's text could be bypassed.
func canonicalCompact(token string) bool {
	parts := 0
	for seg := range strings.SplitSeq(token, ".") {
		parts++
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		if _, err := base64.RawURLEncoding.Strict().DecodeString(seg); err != nil {
			return false
		}
	}
	return parts == 3
}

// Cached returns the Principal of a token verified before and still valid
// (its exp, its nbf and its signing key checked again), without verifying
// it; false when it must be verified. It costs a digest of the token and a
// map lookup, so that a caller may look here before bounding the work of
// full verifications, and a good token never waits behind bad ones.
func (v *Verifier) Cached(token string) (Principal, bool) {
	if v.cache == nil || len(token) > maxTokenBytes {
		return Principal{}, false
	}
	hit, ok := v.cache.get(tokenKey(token))
	if !ok || !v.stillValid(hit) {
		return Principal{}, false
	}
	return hit.principal, true
}

// Verify checks a compact JWS bearer token and returns its Principal, or an
// *Error. It never waits for the key server: a token signed by a key not
// in the current set fails at once (and starts a refetch of the set).
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if len(token) > maxTokenBytes {
		return fail(errTooLarge)
	}
	if v.cache == nil {
		vt, err := v.verify(token)
		return vt.principal, err
	}
	key := tokenKey(token)
	if hit, ok := v.cache.get(key); ok {
		if v.stillValid(hit) {
			return hit.principal, nil
		}
		// Expired, or its key left the set: verifying it again gives the
		// client the precise reason.
		v.cache.remove(key)
	}
	vt, err := v.verify(token)
	if err != nil {
		return Principal{}, err
	}
	v.cache.put(key, vt)
	return vt.principal, nil
}

// stillValid re-checks a cached verification against what may have changed
// since: the clock, and the key set.
func (v *Verifier) stillValid(vt verified) bool {
	now := v.cfg.Now()
	if now.After(vt.expiry.Add(v.cfg.Leeway)) {
		return false
	}
	if !vt.notBefore.IsZero() && now.Add(v.cfg.Leeway).Before(vt.notBefore) {
		return false
	}
	ks := v.keys.Load()
	if ks == nil {
		return false
	}
	k, ok := ks.byKID[vt.kid]
	return ok && k.thumb == vt.thumb
}

// verify checks a token in full: its form, signature and claims.
func (v *Verifier) verify(token string) (verified, error) {
	if !canonicalCompact(token) {
		return failed(errMalformed)
	}
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil {
		var algErr *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &algErr) {
			return failed(errAlgorithm)
		}
		return failed(errMalformed)
	}
	header := jws.Signatures[0].Header
	if typ, ok := header.ExtraHeaders[jose.HeaderType]; ok && !acceptedType(typ) {
		return failed(errType)
	}
	if header.KeyID == "" {
		return failed(errNoKeyID)
	}
	key, ok := v.lookup(header.KeyID)
	if !ok {
		return failed(errUnknownKey)
	}
	if key.Algorithm != "" && key.Algorithm != header.Algorithm {
		return failed(errKeyAlgorithm)
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return failed(errSignature)
	}

	// go-jose's json matches field names case-sensitively, so "TENANT_ID"
	// cannot stand in for tenant_id.
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return failed(errMalformedClaim)
	}
	if c.Expiry == nil {
		return failed(errNoExpiry)
	}
	// jwt.Claims reads a null nbf or iat as absent; RFC 7519 wants numbers.
	var times struct {
		NotBefore json.RawMessage `json:"nbf"`
		IssuedAt  json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(payload, &times); err != nil || string(times.NotBefore) == "null" || string(times.IssuedAt) == "null" {
		return failed(errMalformedClaim)
	}
	now := v.cfg.Now()
	expected := jwt.Expected{
		Issuer:      v.cfg.Issuer,
		AnyAudience: jwt.Audience{v.cfg.Audience},
		Time:        now,
	}
	if err := c.ValidateWithLeeway(expected, v.cfg.Leeway); err != nil {
		return failed(claimsFailure(err))
	}
	if v.cfg.MaxTTL > 0 && tooLong(&c, now, v.cfg.MaxTTL, v.cfg.Leeway) {
		return failed(errLifetime)
	}
	p, err := principalFrom(&c)
	if err != nil {
		return verified{}, err
	}
	vt := verified{principal: p, kid: header.KeyID, thumb: key.thumb, expiry: c.Expiry.Time()}
	if c.NotBefore != nil {
		vt.notBefore = c.NotBefore.Time()
	}
	return vt, nil
}

func failed(e *Error) (verified, error) { return verified{}, e }

// acceptedType reads the typ header (RFC 7515 4.1.9): a JWT or an OAuth
// access token (RFC 9068), case-insensitively, with or without the
// "application/" prefix the RFC lets issuers omit. Any other type is a
// token meant for something else, such as an ID token's logout variant.
func acceptedType(typ any) bool {
	s, ok := typ.(string)
	if !ok {
		return false
	}
	if len(s) > len("application/") && strings.EqualFold(s[:len("application/")], "application/") {
		s = s[len("application/"):]
	}
	return strings.EqualFold(s, "JWT") || strings.EqualFold(s, "at+jwt")
}

// tooLong reports whether the token's exp lies further than maxTTL beyond
// its iat, else its nbf, else now (with leeway, for clocks apart): a token
// that lives for a year is a stolen credential that lives for a year. Its
// nbf stands in for a missing iat, since the token was issued by then at
// the latest; measured from now, a year-long token would pass on its last day.
func tooLong(c *tokenClaims, now time.Time, maxTTL, leeway time.Duration) bool {
	exp := c.Expiry.Time()
	switch {
	case c.IssuedAt != nil:
		return exp.Sub(c.IssuedAt.Time()) > maxTTL
	case c.NotBefore != nil:
		return exp.Sub(c.NotBefore.Time()) > maxTTL
	}
	return exp.Sub(now) > maxTTL+leeway
}

func claimsFailure(err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return errExpired
	case errors.Is(err, jwt.ErrNotValidYet):
		return errNotYetValid
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return errIssuedFuture
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return errIssuer
	case errors.Is(err, jwt.ErrInvalidAudience):
		return errAudience
	default:
		return errClaims
	}
}
