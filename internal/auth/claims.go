package auth

import (
	"strconv"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4/json"

	"github.com/phonesd/phonesd/internal/printable"
)

const maxTenantRunes = 64

func principalFrom(c *tokenClaims) (Principal, error) {
	tenant, ok := parseTenant(c.Tenant)
	if !ok {
		return fail(errTenant)
	}
	p := Principal{
		Tenant:  tenant,
		Subject: c.Subject,
		Email:   optionalString(c.Email, ""),
		Roles:   stringList(c.Roles),
		Origin:  optionalString(c.Origin, "API"),
	}

	switch {
	case c.AccountID != nil:
		// A present account_id of any other shape may be an issuer's way of
		// scoping the token, so it is refused rather than ignored.
		account, ok := parseAccountID(c.AccountID)
		if !ok {
			return fail(errAccountID)
		}
		p.AccountBound, p.Account = true, account
	case c.UID != nil:
		account, ok := parseAccountID(c.UID)
		if !ok {
			return fail(errUID)
		}
		p.AccountBound, p.Account = true, account
	case c.ExternalAccountID != nil && string(c.ExternalAccountID) != "null":
		p.AccountBound = true
	}
	// A uid beside account_id must name the same account, read as
	// strictly: were either to win silently, a token would grant whichever
	// account one reader of it took, and another reader another.
	if c.AccountID != nil && c.UID != nil {
		uid, ok := parseAccountID(c.UID)
		if !ok {
			return fail(errUID)
		}
		if uid != p.Account {
			return fail(errAccountClash)
		}
	}
	return p, nil
}

func parseTenant(raw json.RawMessage) (string, bool) {
	// Decoding replaces invalid UTF-8 with U+FFFD, so the raw bytes are checked
	// first and a decoded U+FFFD (also produced by lone surrogate escapes) is refused.
	if !utf8.Valid(raw) {
		return "", false
	}
	s, ok := jsonString(raw)
	if !ok || s == "" || utf8.RuneCountInString(s) > maxTenantRunes {
		return "", false
	}
	for _, r := range s {
		if r == utf8.RuneError || !printable.Rune(r) {
			return "", false
		}
	}
	return s, true
}

// parseAccountID accepts a JSON integer or a string holding one, written
// canonically, as a positive int64.
func parseAccountID(raw json.RawMessage) (int64, bool) {
	digits := string(raw)
	if s, ok := jsonString(raw); ok {
		digits = s
	}
	if digits == "" || digits[0] == '0' || !allDigits(digits) {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func optionalString(raw json.RawMessage, fallback string) string {
	if s, ok := jsonString(raw); ok {
		return s
	}
	return fallback
}

func stringList(raw json.RawMessage) []string {
	var items []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return []string{}
	}
	list := make([]string, 0, len(items))
	for _, item := range items {
		// Decoding straight into []string would turn a null element into "".
		s, ok := jsonString(item)
		if !ok {
			return []string{}
		}
		list = append(list, s)
	}
	return list
}
