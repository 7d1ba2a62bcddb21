package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"phonesd/internal/auth"
	"phonesd/internal/phone"
)

// operation is what the gate checks for one operation of the contract.
type operation struct {
	// params checks the path arguments and headers and returns the account
	// the request touches.
	params func(r *http.Request, args []string) (account int64, err error)
	// body checks a JSON body; nil for operations without one.
	body func([]byte) error
	// failMsg is the body of the operation's 500.
	failMsg string
}

// gate runs the checks of the contract in its order: route (404/405, left to
// the generated router), token (401), path and headers (400), account-specific
// token (403), media type and size (415/413), body (400). Only then does the
// generated server decode the request, which it would otherwise check in
// another order (parameters before the token's account, body fields in
// document order).
func (s *Server) gate(ops map[string]operation, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Route on the path as sent, so that parameters reach their checks
		// still encoded: an id spelled %31 or 1%2F..%2F2 is refused, not
		// decoded into another id.
		path := r.URL.EscapedPath()
		if strings.HasSuffix(path, "/") || strings.Contains(path, "//") {
			// The generated router would read an empty segment as an
			// empty parameter; no path of the contract has one.
			writeMessage(w, http.StatusNotFound, msgNotFound)
			return
		}
		route, ok := s.oas.FindRoute(r.Method, path)
		if !ok {
			if r.URL.RawPath == "" {
				next.ServeHTTP(w, r) // the generated router answers 404 or 405
				return
			}
			// The generated router would decode the escapes; answer for the
			// path as sent.
			var allowed []string
			for _, m := range []string{http.MethodGet, http.MethodPatch, http.MethodPost} {
				if _, ok := s.oas.FindRoute(m, path); ok {
					allowed = append(allowed, m)
				}
			}
			if len(allowed) == 0 {
				writeMessage(w, http.StatusNotFound, msgNotFound)
				return
			}
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeMessage(w, http.StatusMethodNotAllowed, msgMethodNotAllowed)
			return
		}
		info := routeOf(r.Context())
		info.route = route.PathPattern()
		op, ok := ops[route.Name()]
		if !ok {
			s.log.ErrorContext(r.Context(), "operation without gate checks", "operation", route.Name())
			writeMessage(w, http.StatusInternalServerError, msgInternal)
			return
		}
		info.failMsg = op.failMsg
		if s.draining.Load() {
			writeDraining(w)
			return
		}
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		info.tenant = p.Tenant
		if !s.allowTenant(w, p.Tenant) {
			return
		}
		account, err := op.params(r, route.Args())
		if err != nil {
			writeError(w, err)
			return
		}
		if !p.MayAccess(account) {
			writeMessage(w, http.StatusForbidden, msgForbidden)
			return
		}
		if op.body != nil {
			body, ok := readJSONBody(w, r)
			if !ok {
				return
			}
			if err := op.body(body); err != nil {
				writeError(w, err)
				return
			}
			if r.Header.Get("Idempotency-Key") != "" {
				info.fingerprint = fingerprint(path, r.Header.Get("X-Customer-Id"), body)
			}
			// ogen reads the body again; it gets exactly what was checked.
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			r.Header.Set("Content-Type", "application/json")
		}
		next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
	})
}

// writeError answers a gate check's error: a *phone.FieldError is a 400.
func writeError(w http.ResponseWriter, err error) {
	var fe *phone.FieldError
	if errors.As(err, &fe) {
		writeFieldError(w, fe)
		return
	}
	writeMessage(w, http.StatusBadRequest, err.Error())
}

func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		writeUnauthorized(w, msgUnauthorized)
		return auth.Principal{}, false
	case len(vals) > 1:
		writeUnauthorized(w, "Send exactly one Authorization header")
		return auth.Principal{}, false
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		writeUnauthorized(w, "Authorization must be a Bearer token")
		return auth.Principal{}, false
	}
	p, err := s.verifier.Verify(r.Context(), token)
	if err != nil {
		msg := "Invalid bearer token"
		var ae *auth.Error
		if errors.As(err, &ae) {
			msg = ae.Message
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="phonesd", error="invalid_token"`)
		writeMessage(w, http.StatusUnauthorized, msg)
		return auth.Principal{}, false
	}
	return p, true
}

// readJSONBody enforces the media type (a missing Content-Type is read as
// JSON) and the size limit, and returns the body.
func readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	switch cts := r.Header.Values("Content-Type"); len(cts) {
	case 0:
	case 1:
		if !isJSON(cts[0]) {
			writeMessage(w, http.StatusUnsupportedMediaType, msgMediaType)
			return nil, false
		}
	default:
		writeMessage(w, http.StatusUnsupportedMediaType, msgMediaType)
		return nil, false
	}
	if r.ContentLength > maxBody {
		writeMessage(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeMessage(w, http.StatusRequestEntityTooLarge, msgTooLarge)
			return nil, false
		}
		writeFieldError(w, &phone.FieldError{Field: "body", Message: "request body could not be read"})
		return nil, false
	}
	return body, true
}

// isJSON accepts application/json and application/*+json, with parameters;
// a charset other than UTF-8 is refused, since JSON is UTF-8.
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	sub, ok := strings.CutPrefix(mt, "application/")
	if !ok || (sub != "json" && !strings.HasSuffix(sub, "+json")) {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return true
}

// accountArg checks the accountId path argument.
func accountArg(arg string) (int64, error) {
	account, ok := parseID(arg)
	if !ok {
		return 0, &phone.FieldError{Field: "accountId", Message: "accountId must be an integer from 1 to 9223372036854775807"}
	}
	return account, nil
}

// createParams checks Create phone's path and headers.
func createParams(r *http.Request, args []string) (int64, error) {
	account, err := accountArg(args[0])
	if err != nil {
		return 0, err
	}
	if _, err := customerID(r.Header); err != nil {
		return 0, err
	}
	if err := checkIdempotencyKey(r.Header); err != nil {
		return 0, err
	}
	return account, nil
}

// checkIdempotencyKey checks the optional Idempotency-Key header: sent at
// most once, 1 to 255 printable ASCII characters.
func checkIdempotencyKey(h http.Header) error {
	vals := h.Values("Idempotency-Key")
	if len(vals) == 0 {
		return nil
	}
	bad := len(vals) > 1 || len(vals[0]) == 0 || len(vals[0]) > 255
	for i := 0; !bad && i < len(vals[0]); i++ {
		bad = vals[0][i] < 0x20 || vals[0][i] > 0x7e
	}
	if bad {
		return &phone.FieldError{Field: "Idempotency-Key", Message: "Idempotency-Key must be sent at most once, as 1 to 255 printable ASCII characters"}
	}
	return nil
}

// fingerprint digests what makes two creates the same request.
func fingerprint(path, customer string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write([]byte(customer))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}

// phoneParams checks the path of Get phone information.
func phoneParams(r *http.Request, args []string) (int64, error) {
	account, err := accountArg(args[0])
	if err != nil {
		return 0, err
	}
	if _, ok := parseID(args[1]); !ok {
		return 0, &phone.FieldError{Field: "phoneId", Message: "phoneId must be an integer from 1 to 9223372036854775807"}
	}
	return account, nil
}

// updateParams checks Update phone's path and its If-Match header.
func updateParams(r *http.Request, args []string) (int64, error) {
	account, err := phoneParams(r, args)
	if err != nil {
		return 0, err
	}
	if vals := r.Header.Values("If-Match"); len(vals) > 0 {
		if _, err := parseIfMatch(vals); err != nil {
			return 0, &phone.FieldError{Field: "If-Match", Message: err.Error()}
		}
		// ogen reads one header value; the gate has checked them all.
		r.Header.Set("If-Match", strings.Join(vals, ", "))
	}
	return account, nil
}

// listParams checks List phones' path and query: active, type, limit and
// cursor, each at most once and exactly as the contract spells them.
func listParams(r *http.Request, args []string) (int64, error) {
	account, err := accountArg(args[0])
	if err != nil {
		return 0, err
	}
	query, err := listQuery(r.URL.RawQuery)
	if err != nil {
		return 0, err
	}
	one := func(name string) (string, bool, error) {
		switch vals := query[name]; len(vals) {
		case 0:
			return "", false, nil
		case 1:
			return vals[0], true, nil
		default:
			return "", false, &phone.FieldError{Field: name, Message: name + " must be given at most once"}
		}
	}
	if v, ok, err := one("active"); err != nil {
		return 0, err
	} else if ok && v != "true" && v != "false" {
		return 0, &phone.FieldError{Field: "active", Message: "active must be true or false"}
	}
	if v, ok, err := one("type"); err != nil {
		return 0, err
	} else if ok && v != string(phone.Residential) && v != string(phone.Commercial) && v != string(phone.Mobile) {
		return 0, &phone.FieldError{Field: "type", Message: "type must be one of RESIDENTIAL, COMMERCIAL, MOBILE"}
	}
	if v, ok, err := one("limit"); err != nil {
		return 0, err
	} else if n, valid := parseID(v); ok && (!valid || n > maxLimit) {
		return 0, &phone.FieldError{Field: "limit", Message: "limit must be an integer from 1 to 500"}
	}
	if v, ok, err := one("cursor"); err != nil {
		return 0, err
	} else if ok && (v == "" || len(v) > 64) {
		return 0, &phone.FieldError{Field: "cursor", Message: "cursor is not a cursor of this list: start again without it"}
	}
	return account, nil
}

// listFilters are List phones' query parameters.
var listFilters = [...]string{"active", "type", "limit", "cursor"}

// listQuery reads a query string. url.ParseQuery drops a pair it cannot
// decode, which would turn a malformed filter into no filter and answer
// every phone; here a filter whose value cannot be decoded is a 400 naming
// it. Pairs of other names are ignored, decodable or not.
func listQuery(raw string) (url.Values, error) {
	query := url.Values{}
	for pair := range strings.SplitSeq(raw, "&") {
		name, value, _ := strings.Cut(pair, "=")
		// A semicolon once separated pairs too; read either way, a filter
		// next to one is malformed.
		name, _, semicolon := strings.Cut(name, ";")
		name, err := url.QueryUnescape(name)
		if err != nil || !slices.Contains(listFilters[:], name) {
			continue
		}
		v, err := url.QueryUnescape(value)
		if err != nil || semicolon || strings.Contains(value, ";") {
			return nil, &phone.FieldError{Field: name, Message: name + " is not a valid query parameter value"}
		}
		query[name] = append(query[name], v)
	}
	return query, nil
}

// maxLimit is the largest page a list returns.
const maxLimit = 500

// parseIfMatch reads If-Match values: "*" accepts any version (nil), else
// the versions named by strong entity tags. Weak tags never match, as RFC
// 9110 requires strong comparison for If-Match; so do tags that name no
// version of ours, which leaves an empty list and a 412.
func parseIfMatch(vals []string) ([]int64, error) {
	versions := []int64{}
	for _, v := range vals {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			switch {
			case tag == "*":
				return nil, nil
			case strings.HasPrefix(tag, `W/"`) && strings.HasSuffix(tag, `"`) && len(tag) >= 4:
			case strings.HasPrefix(tag, `"`) && strings.HasSuffix(tag, `"`) && len(tag) >= 2:
				if n, ok := parseID(tag[1 : len(tag)-1]); ok {
					versions = append(versions, n)
				}
			default:
				return nil, errors.New(`If-Match must be "*" or a list of entity tags such as "3"`)
			}
		}
	}
	return versions, nil
}

// customerID reads the optional x-customer-id header: nil when absent.
func customerID(h http.Header) (*int64, error) {
	vals := h.Values("X-Customer-Id")
	switch len(vals) {
	case 0:
		return nil, nil
	case 1:
		if id, ok := parseID(vals[0]); ok {
			return &id, nil
		}
		return nil, &phone.FieldError{Field: "x-customer-id", Message: "x-customer-id must be an integer from 1 to 9223372036854775807"}
	default:
		return nil, &phone.FieldError{Field: "x-customer-id", Message: "x-customer-id must be sent at most once"}
	}
}

// parseID accepts only the canonical decimal form of 1..MaxInt64: no sign,
// no leading zeros, no spaces, so each id has one spelling.
func parseID(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p auth.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalOf(ctx context.Context) (auth.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(auth.Principal)
	return p, ok
}
