package httpapi

import (
	"errors"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/go-faster/jx"

	"phonesd/internal/phone"
)

// decodePhoneRequest reads a PhoneRequest body strictly and returns the draft
// it holds, or the *phone.FieldError to answer with. ogen's decoder reports
// fields in the order they appear in the document and accepts duplicate keys;
// the contract wants the first broken field in schema order, so the body is
// checked here before ogen decodes it.
//
// Whole-body faults (empty, invalid UTF-8, not JSON, not an object, trailing
// data) win over field faults, since no field can be trusted then. Among
// fields, a wrong JSON type and a broken rule compete by schema order.
func decodePhoneRequest(body []byte) (phone.Draft, error) {
	var d phone.Draft
	if len(body) == 0 {
		return d, bodyError("request body is required")
	}
	if !utf8.Valid(body) {
		return d, bodyError("request body is not valid UTF-8")
	}
	dec := jx.DecodeBytes(body)
	switch dec.Next() {
	case jx.Object:
	case jx.Invalid:
		return d, bodyError("request body is not valid JSON")
	default:
		return d, bodyError("request body must be a JSON object")
	}
	var (
		typeErr *phone.FieldError // the first type fault in schema order
		seen    [len(phone.Fields)]bool
	)
	fault := func(field, msg string) {
		if typeErr == nil || phone.FieldRank(field) < phone.FieldRank(typeErr.Field) {
			typeErr = &phone.FieldError{Field: field, Message: msg}
		}
	}
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
			return decodeInt(dec, field, "area_code must be an integer from 0 to 2147483647", &d.AreaCode, fault)
		case "country_code":
			return decodeInt(dec, field, "country_code must be an integer from 0 to 99999", &d.CountryCode, fault)
		}
		return dec.Skip()
	})
	if err != nil {
		return d, bodyError("request body is not valid JSON")
	}
	if err := dec.Skip(); !errors.Is(err, io.EOF) {
		return d, bodyError("request body has data after the JSON object")
	}
	ruleErr := d.Validate()
	if typeErr != nil {
		var fe *phone.FieldError
		if !errors.As(ruleErr, &fe) || phone.FieldRank(typeErr.Field) <= phone.FieldRank(fe.Field) {
			return d, typeErr
		}
	}
	return d, ruleErr
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
// beyond int64 is reported as out of range, with the field's range message.
func decodeInt(dec *jx.Decoder, field, rangeMsg string, dst **int64, fault func(field, msg string)) error {
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
		fault(field, rangeMsg)
		return nil
	}
	*dst = &v
	return nil
}
