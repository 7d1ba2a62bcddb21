package httpapi

import (
	"errors"
	"reflect"
	"testing"

	"github.com/go-faster/jx"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/phone"
)

var decodeSeeds = []string{
	`{"area_code": 11, "number": "91234-5678", "type": "MOBILE", "extension": "ext 123", "active": true}`,
	`{"number": "1", "type": "RESIDENTIAL", "country_code": 99999, "area_code": 0}`,
	`{"number": "+55 (11) 3000.1234", "type": "COMMERCIAL", "extension": "éééééééééé"}`,
	`{"number": "1", "type": "MOBILE", "number": "2"}`,
	`{"type": 5, "number": 7}`,
	`{"number": null, "type": "MOBILE"}`,
	`{"number": "1", "type": "MOBILE", "area_code": 11.0}`,
	`{"number": "1", "type": "MOBILE", "area_code": 1e1}`,
	`{"number": "1", "type": "MOBILE", "area_code": -0}`,
	`{"number": "1", "type": "MOBILE", "country_code": 01}`,
	`{"number": "1", "type": "MOBILE", "area_code": 99999999999999999999999}`,
	`{"num\u0062er": "1", "type": "MOBILE"}`,
	`{"number": "\u0031", "type": "MOBILE", "x": [[[[{}]]]]}`,
	`{"number": "1", "type": "MOBILE"} x`,
	`[]`, `null`, ``, `{`, `{"number"`, "{\"number\": \"\xff\"}", `{"number": "\ud800", "type": "MOBILE"}`,
}

// FuzzDecodePhoneRequest checks that the body decoder never panics, always
// names a known field, and never accepts what the decoder generated from
// the contract would refuse, nor reads a value differently: the phone it
// makes is the one the generated decoder's reading makes.
func FuzzDecodePhoneRequest(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	customer := int64(9)
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeCreate(body, "TN-1", 7, &customer)
		if err != nil {
			var fe *phone.FieldError
			if !errors.As(err, &fe) || fe.Message == "" {
				t.Fatalf("error %v is not a *phone.FieldError with a message", err)
			}
			if fe.Field != "body" && phone.FieldRank(fe.Field) == len(phone.Fields) {
				t.Fatalf("field %q is not a body field", fe.Field)
			}
			return
		}
		var req api.PhoneRequest
		dec := jx.DecodeBytes(body)
		if err := req.Decode(dec); err != nil {
			t.Fatalf("accepted %q but ogen refuses it: %v", body, err)
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted %q but ogen's validation refuses it: %v", body, err)
		}
		want, err := phone.New("TN-1", 7, &customer, draftOf(&req))
		if err != nil {
			t.Fatalf("accepted %q but the phone ogen reads is refused: %v", body, err)
		}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("%q: ogen reads %+v, the decoder %+v", body, want, p)
		}
	})
}

// FuzzDecodePhoneUpdate is FuzzDecodePhoneRequest for Update phone's body,
// where null clears area_code and extension.
func FuzzDecodePhoneUpdate(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{}`, `{"x": 1}`, `{"area_code": null}`, `{"extension": null, "active": false}`, `{"number": null}`, `{"country_code": null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeUpdate(body)
		if err != nil {
			var fe *phone.FieldError
			if !errors.As(err, &fe) || fe.Message == "" {
				t.Fatalf("error %v is not a *phone.FieldError with a message", err)
			}
			if fe.Field != "body" && phone.FieldRank(fe.Field) == len(phone.Fields) {
				t.Fatalf("field %q is not a body field", fe.Field)
			}
			return
		}
		var req api.PhoneUpdateRequest
		if err := req.Decode(jx.DecodeBytes(body)); err != nil {
			t.Fatalf("accepted %q but ogen refuses it: %v", body, err)
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted %q but ogen's validation refuses it: %v", body, err)
		}
		got, err := patchOf(&req).Validate()
		if err != nil {
			t.Fatalf("accepted %q but the patch ogen reads is refused: %v", body, err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("%q: ogen reads %+v, the decoder %+v", body, got, p)
		}
	})
}

// draftOf is the draft of a create as ogen's decoder reads it.
func draftOf(req *api.PhoneRequest) phone.Draft {
	number, typ := string(req.Number), string(req.Type)
	d := phone.Draft{Number: &number, Type: &typ}
	if v, ok := req.Active.Get(); ok {
		b := bool(v)
		d.Active = &b
	}
	if v, ok := req.AreaCode.Get(); ok {
		a := int64(v)
		d.AreaCode = &a
	}
	if v, ok := req.CountryCode.Get(); ok {
		c := int64(v)
		d.CountryCode = &c
	}
	if v, ok := req.Extension.Get(); ok {
		e := string(v)
		d.Extension = &e
	}
	return d
}

// patchOf is an update's patch as ogen's decoder reads it.
func patchOf(req *api.PhoneUpdateRequest) phone.Patch {
	var p phone.Patch
	if v, ok := req.Number.Get(); ok {
		n := string(v)
		p.Number = &n
	}
	if v, ok := req.Type.Get(); ok {
		t := string(v)
		p.Type = &t
	}
	if v, ok := req.Active.Get(); ok {
		b := bool(v)
		p.Active = &b
	}
	if req.AreaCode.IsSet() {
		if v, ok := req.AreaCode.Get(); ok {
			a := int64(v)
			p.AreaCode = &a
		} else {
			p.ClearAreaCode = true
		}
	}
	if v, ok := req.CountryCode.Get(); ok {
		c := int64(v)
		p.CountryCode = &c
	}
	if req.Extension.IsSet() {
		if v, ok := req.Extension.Get(); ok {
			p.Extension = &v
		} else {
			p.ClearExtension = true
		}
	}
	return p
}
