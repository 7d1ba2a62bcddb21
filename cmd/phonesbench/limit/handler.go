package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/phone"
)

// verifier checks HS256 tokens of one issuer and audience.
type verifier struct {
	key              []byte
	issuer, audience string
}

func newVerifier(keyHex, issuer, audience string) (*verifier, error) {
	key, err := hex.DecodeString(keyHex)
	if err != nil || len(key) < 32 {
		return nil, errors.New("PHONES_LIMIT_KEY: want at least 32 bytes in hex")
	}
	if issuer == "" || audience == "" {
		return nil, errors.New("PHONES_JWT_ISSUER and PHONES_JWT_AUDIENCE are required")
	}
	return &verifier{key: key, issuer: issuer, audience: audience}, nil
}

// tenant returns the tenant_id of the bearer token in authz, and false
// unless the token is HS256, signed with the key, of the issuer and
// audience, and not expired.
func (v *verifier) tenant(authz string) (string, bool) {
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok {
		return "", false
	}
	head, rest, ok1 := strings.Cut(tok, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return "", false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if !decodeSegment(head, &h) || h.Alg != "HS256" {
		return "", false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return "", false
	}
	mac := hmac.New(sha256.New, v.key)
	mac.Write([]byte(tok[:len(head)+1+len(payload)]))
	if !hmac.Equal(mac.Sum(nil), got) {
		return "", false
	}
	var c struct {
		Issuer   string `json:"iss"`
		Audience string `json:"aud"`
		Expiry   int64  `json:"exp"`
		Tenant   string `json:"tenant_id"`
	}
	if !decodeSegment(payload, &c) || c.Issuer != v.issuer || c.Audience != v.audience ||
		c.Expiry <= time.Now().Unix() || c.Tenant == "" {
		return "", false
	}
	return c.Tenant, true
}

func decodeSegment(seg string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	return err == nil && json.Unmarshal(b, v) == nil
}

// create is one create on its way through the writer.
type create struct {
	tenant  string
	account int64
	number  string
	typ     string
	area    *int64
	country int64
	dupKey  string
	cid     string

	// Set by the writer before done closes.
	id        int64
	duplicate bool
	err       error
	done      chan struct{}
}

// handler is Create phone.
type handler struct {
	verify *verifier
	writer *writer
}

// createBody is the request body.
type createBody struct {
	Number      *string `json:"number"`
	Type        *string `json:"type"`
	AreaCode    *int64  `json:"area_code"`
	CountryCode *int64  `json:"country_code"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tenant, ok := h.verify.tenant(r.Header.Get("Authorization"))
	if !ok {
		answer(w, http.StatusUnauthorized, `{"message":"invalid token"}`)
		return
	}
	account, err := strconv.ParseInt(r.PathValue("account"), 10, 64)
	if err != nil || account < 1 {
		answer(w, http.StatusBadRequest, `{"message":"invalid account id"}`)
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		answer(w, http.StatusBadRequest, `{"message":"unreadable body"}`)
		return
	}
	var b createBody
	if err := json.Unmarshal(raw, &b); err != nil {
		answer(w, http.StatusBadRequest, `{"message":"invalid JSON"}`)
		return
	}
	c, msg := b.validate()
	if msg != "" {
		answer(w, http.StatusBadRequest, `{"message":"`+msg+`"}`)
		return
	}
	c.tenant, c.account, c.cid = tenant, account, uuid.NewString()
	if err := h.writer.do(r.Context(), c); err != nil {
		answer(w, http.StatusInternalServerError, `{"message":"create failed"}`)
		return
	}
	if c.duplicate {
		answer(w, http.StatusConflict, `{"message":"phone number already exists"}`)
		return
	}
	answer(w, http.StatusOK, `{"id":`+strconv.FormatInt(c.id, 10)+`}`)
}

// validate returns the create of b, or what is wrong with it. Its rules
// are fewer than phonesd's (a number of digits alone), but their bounds,
// types and default are the domain's own.
func (b createBody) validate() (*create, string) {
	if b.Number == nil || len(*b.Number) == 0 || len(*b.Number) > phone.MaxNumberLen || strings.Trim(*b.Number, "0123456789") != "" {
		return nil, "number must be 1 to " + strconv.Itoa(phone.MaxNumberLen) + " digits"
	}
	typ := ""
	if b.Type != nil {
		typ = *b.Type
	}
	if _, err := phone.ParseType(typ); err != nil {
		var fe *phone.FieldError
		errors.As(err, &fe)
		return nil, fe.Message
	}
	if b.AreaCode != nil && (*b.AreaCode < 0 || *b.AreaCode > phone.MaxAreaCode) {
		return nil, "area_code out of range"
	}
	country := int64(phone.DefaultCountryCode)
	if b.CountryCode != nil {
		country = *b.CountryCode
	}
	if country < 0 || country > phone.MaxCountryCode {
		return nil, "country_code out of range"
	}
	area := "-"
	if b.AreaCode != nil {
		area = strconv.FormatInt(*b.AreaCode, 10)
	}
	return &create{
		number: *b.Number, typ: *b.Type, area: b.AreaCode, country: country,
		dupKey: strconv.FormatInt(country, 10) + "|" + area + "|" + *b.Number,
	}, ""
}

func answer(w http.ResponseWriter, status int, body string) {
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// event is the create's audit event, written with the event contract's
// types, the shape phonesd's outbox holds.
func (c *create) event(at time.Time) ([]byte, error) {
	obj := api.AuditedPhone{ID: c.id, AccountID: c.account, CountryCode: strconv.FormatInt(c.country, 10), Number: c.number, Type: api.PhoneType(c.typ), Active: true}
	if c.area != nil {
		obj.AreaCode = new(strconv.FormatInt(*c.area, 10))
	}
	return json.Marshal(api.PhoneEvent{
		EventID: uuid.Must(uuid.NewV7()).String(), SchemaVersion: api.EventSchemaVersion, Domain: api.EventDomain, EventType: api.EventPhoneCreation,
		OrgID: c.tenant, CID: c.cid, Timestamp: at.UTC().Format(phone.TimestampLayout),
		Data: api.PhoneAudit{Method: api.EventCreationMethod, URI: api.EventCreationURI, Roles: []string{}, Origin: "API", Object: obj},
	})
}
