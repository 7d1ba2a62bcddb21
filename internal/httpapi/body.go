package httpapi

import (
	"crypto/sha256"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-faster/jx"

	"github.com/phonesd/phonesd/internal/phone"
)

// maxBody is the largest request body accepted.
const maxBody = 64 << 10

// readBody enforces the media type (a missing Content-Type is read as
// JSON), the size limit and the body's deadline, and returns the body or
// the refusal to answer with.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	switch cts := r.Header.Values("Content-Type"); len(cts) {
	case 0:
	case 1:
		if !isJSON(cts[0]) {
			return nil, errMediaType
		}
	default:
		return nil, errMediaType
	}
	if r.ContentLength > maxBody {
		return nil, errTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, errTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, errBodyTimeout
	case err != nil:
		return nil, bodyError("request body could not be read")
	}
	if s.bodyTimeout > 0 {
		// The deadline was the body's; the rest of the exchange runs under
		// the storage timeout. Left in place, it would end the request's
		// context while the service still works on it.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	return body, nil
}

// isJSON accepts application/json and application/*+json, with parameters;
// a charset other than UTF-8 is refused, since JSON is UTF-8.
func isJSON(contentType string) bool {
	if contentType == "application/json" {
		return true // what nearly every client sends, without parsing it
	}
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

// The bodies of Create phone and Update phone are decoded here, strictly,
// in one pass: ogen's generated decoder would report fields in the order
// they appear in the document and accept duplicate keys, where the contract
// wants the first broken field in schema order.
//
// Whole-body faults (empty, invalid UTF-8, not JSON, not an object, trailing
// data) win over field faults, since no field can be trusted then. Among
// fields, a wrong JSON type and a broken rule compete by schema order.

// decodeCreate reads a Create phone body into the phone it creates for the
// account of a tenant, defaults applied, or returns the *phone.FieldError
// to answer with.
func decodeCreate(body []byte, tenant string, account int64, customer *int64) (phone.Candidate, error) {
	b, err := decodeBody(body, false)
	if err != nil {
		return phone.Candidate{}, err
	}
	p, err := phone.New(tenant, account, customer, b.draft)
	if err := b.first(err); err != nil {
		return phone.Candidate{}, err
	}
	return p, nil
}

// decodeUpdate reads an Update phone body, where null clears area_code and
// extension, into its validated patch, or returns the *phone.FieldError to
// answer with.
func decodeUpdate(body []byte) (phone.ValidPatch, error) {
	b, err := decodeBody(body, true)
	if err != nil {
		return phone.ValidPatch{}, err
	}
	p := phone.Patch{Draft: b.draft, ClearAreaCode: b.nullAreaCode, ClearExtension: b.nullExtension}
	if p.Empty() && b.typeErr == nil {
		return phone.ValidPatch{}, bodyError("request body must set at least one of number, type, active, area_code, country_code, extension")
	}
	v, err := p.Validate()
	if err := b.first(err); err != nil {
		return phone.ValidPatch{}, err
	}
	return v, nil
}

// decodedBody is a body whose JSON is sound: the values of well-typed fields,
// the fields sent as an accepted null, and the first type fault.
type decodedBody struct {
	draft         phone.Draft
	nullAreaCode  bool
	nullExtension bool
	typeErr       *phone.FieldError
}

// first returns whichever of the type fault and ruleErr comes first in
// schema order (the type fault on a tie).
func (b decodedBody) first(ruleErr error) error {
	if b.typeErr == nil {
		return ruleErr
	}
	var fe *phone.FieldError
	if errors.As(ruleErr, &fe) && phone.FieldRank(fe.Field) < phone.FieldRank(b.typeErr.Field) {
		return ruleErr
	}
	return b.typeErr
}

// decodeBody parses the object; clearable says whether area_code and
// extension may be null.
func decodeBody(body []byte, clearable bool) (decodedBody, error) {
	var b decodedBody
	if len(body) == 0 {
		return b, bodyError("request body is required")
	}
	if !utf8.Valid(body) {
		return b, bodyError("request body is not valid UTF-8")
	}
	dec := jx.DecodeBytes(body)
	switch dec.Next() {
	case jx.Object:
	case jx.Invalid:
		return b, bodyError("request body is not valid JSON")
	default:
		return b, bodyError("request body must be a JSON object")
	}
	var seen [len(phone.Fields)]bool
	fault := func(field, msg string) {
		if b.typeErr == nil || phone.FieldRank(field) < phone.FieldRank(b.typeErr.Field) {
			b.typeErr = &phone.FieldError{Field: field, Message: msg}
		}
	}
	d := &b.draft
	err := dec.ObjBytes(func(dec *jx.Decoder, key []byte) error {
		field := string(key)
		rank := phone.FieldRank(field)
		if rank == len(phone.Fields) {
			return dec.Skip() // unknown fields are ignored
		}
		if seen[rank] {
			fault(field, field+" appears more than once")
			return dec.Skip()
		}
		seen[rank] = true
		if clearable && dec.Next() == jx.Null {
			switch field {
			case "area_code":
				b.nullAreaCode = true
				return dec.Null()
			case "extension":
				b.nullExtension = true
				return dec.Null()
			}
		}
		switch field {
		case "number":
			return decodeString(dec, field, &d.Number, fault)
		case "type":
			return decodeString(dec, field, &d.Type, fault)
		case "extension":
			return decodeString(dec, field, &d.Extension, fault)
		case "active":
			if dec.Next() != jx.Bool {
				fault(field, "active must be a boolean")
				return dec.Skip()
			}
			v, err := dec.Bool()
			d.Active = &v
			return err
		case "area_code":
			return decodeInt(dec, field, &d.AreaCode, fault)
		case "country_code":
			return decodeInt(dec, field, &d.CountryCode, fault)
		}
		return dec.Skip()
	})
	if err != nil {
		return b, bodyError("request body is not valid JSON")
	}
	if err := dec.Skip(); !errors.Is(err, io.EOF) {
		return b, bodyError("request body has data after the JSON object")
	}
	return b, nil
}

func bodyError(msg string) error {
	return &phone.FieldError{Field: "body", Message: msg}
}

func decodeString(dec *jx.Decoder, field string, dst **string, fault func(field, msg string)) error {
	if dec.Next() != jx.String {
		fault(field, field+" must be a string")
		return dec.Skip()
	}
	v, err := dec.Str()
	*dst = &v
	return err
}

// decodeInt accepts only integer literals: 11.0 and 1e1 are refused, as
// ogen's generated decoder refuses them, so the two never disagree. A value
// beyond int64 is reported as out of range, as the domain reports it.
func decodeInt(dec *jx.Decoder, field string, dst **int64, fault func(field, msg string)) error {
	if dec.Next() != jx.Number {
		fault(field, field+" must be an integer")
		return dec.Skip()
	}
	num, err := dec.Num()
	if err != nil {
		return err
	}
	if !num.IsInt() {
		fault(field, field+" must be an integer")
		return nil
	}
	v, err := strconv.ParseInt(num.String(), 10, 64)
	if err != nil {
		fault(field, phone.OutOfRange(field).Message)
		return nil
	}
	*dst = &v
	return nil
}
