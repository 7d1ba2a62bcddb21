package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/phonesd/phonesd/internal/phone"
)

// Each parameter of the contract is read here, once, from the request as
// sent, into the domain's types; every refusal is a *phone.FieldError
// naming the parameter.

// createParams reads Create phone's path and headers.
func createParams(in *request, r *http.Request, args pathArgs) error {
	var err error
	if in.account, err = accountArg(args.account); err != nil {
		return err
	}
	if in.customer, err = customerID(r.Header); err != nil {
		return err
	}
	in.key, err = idempotencyKey(r.Header)
	return err
}

// phoneParams reads the path of Get phone information.
func phoneParams(in *request, r *http.Request, args pathArgs) error {
	var err error
	if in.account, err = accountArg(args.account); err != nil {
		return err
	}
	var ok bool
	if in.phoneID, ok = parseID(args.phone); !ok {
		return &phone.FieldError{Field: "phoneId", Message: "phoneId must be an integer from 1 to 9223372036854775807"}
	}
	return nil
}

// updateParams reads Update phone's path and its If-Match header.
func updateParams(in *request, r *http.Request, args pathArgs) error {
	if err := phoneParams(in, r, args); err != nil {
		return err
	}
	if vals := r.Header.Values("If-Match"); len(vals) > 0 {
		versions, err := parseIfMatch(vals)
		if err != nil {
			return &phone.FieldError{Field: "If-Match", Message: err.Error()}
		}
		in.ifMatch = versions
	}
	return nil
}

// accountArg reads the accountId path argument.
func accountArg(arg string) (int64, error) {
	account, ok := parseID(arg)
	if !ok {
		return 0, &phone.FieldError{Field: "accountId", Message: "accountId must be an integer from 1 to 9223372036854775807"}
	}
	return account, nil
}

// idempotencyKey reads the optional Idempotency-Key header: sent at most
// once, 1 to 255 printable ASCII characters; "" when absent.
func idempotencyKey(h http.Header) (string, error) {
	vals := h.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	bad := len(vals) > 1 || len(vals[0]) == 0 || len(vals[0]) > 255
	for i := 0; !bad && i < len(vals[0]); i++ {
		bad = vals[0][i] < 0x20 || vals[0][i] > 0x7e
	}
	if bad {
		return "", &phone.FieldError{Field: "Idempotency-Key", Message: "Idempotency-Key must be sent at most once, as 1 to 255 printable ASCII characters"}
	}
	return vals[0], nil
}

// listParams are List phones' query parameters.
type listParams struct {
	active *bool
	typ    *phone.Type
	limit  int
	cursor string // "" when absent
}

// defaultLimit is a list page's size when the client names none, and
// maxLimit the largest page a list returns.
const (
	defaultLimit = 50
	maxLimit     = 500
)

// listPhonesParams reads List phones' path and query: active, type, limit
// and cursor, each at most once and exactly as the contract spells them.
func listPhonesParams(in *request, r *http.Request, args pathArgs) error {
	var err error
	if in.account, err = accountArg(args.account); err != nil {
		return err
	}
	query, err := listQuery(r.URL.RawQuery)
	if err != nil {
		return err
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
	l := listParams{limit: defaultLimit}
	if v, ok, err := one("active"); err != nil {
		return err
	} else if ok {
		if v != "true" && v != "false" {
			return &phone.FieldError{Field: "active", Message: "active must be true or false"}
		}
		active := v == "true"
		l.active = &active
	}
	if v, ok, err := one("type"); err != nil {
		return err
	} else if ok {
		t, err := phone.ParseType(v)
		if err != nil {
			return err
		}
		l.typ = &t
	}
	if v, ok, err := one("limit"); err != nil {
		return err
	} else if ok {
		n, valid := parseID(v)
		if !valid || n > maxLimit {
			return &phone.FieldError{Field: "limit", Message: "limit must be an integer from 1 to 500"}
		}
		l.limit = int(n)
	}
	if v, ok, err := one("cursor"); err != nil {
		return err
	} else if ok {
		if v == "" || len(v) > 64 {
			return badCursor()
		}
		l.cursor = v
	}
	in.list = l
	return nil
}

// badCursor refuses a cursor that is not one of this list's: malformed,
// or made for another tenant, account or filters.
func badCursor() *phone.FieldError {
	return &phone.FieldError{Field: "cursor", Message: "cursor is not a cursor of this list: start again without it"}
}

// listFilters are List phones' query parameters.
var listFilters = [...]string{"active", "type", "limit", "cursor"}

// listQuery reads a query string. url.ParseQuery drops a pair it cannot
// decode, which would turn a malformed filter into no filter and answer
// every phone; here a filter whose value cannot be decoded is a 400 naming
// it. Pairs of other names are ignored, decodable or not.
func listQuery(raw string) (url.Values, error) {
	query := url.Values{}
	if raw == "" {
		return query, nil
	}
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
