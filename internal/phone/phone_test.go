package phone

import (
	"errors"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestDuplicateKey(t *testing.T) {
	base := Phone{CountryCode: 55, AreaCode: ptr(int32(11)), Number: "91234-5678", Extension: ptr(" Ext 9 ")}
	same := []Phone{
		{CountryCode: 55, AreaCode: ptr(int32(11)), Number: "912345678", Extension: ptr("ext 9")},
		{CountryCode: 55, AreaCode: ptr(int32(11)), Number: "(9) 1234.5678", Extension: ptr("EXT 9"), Type: Residential},
	}
	different := []Phone{
		{CountryCode: 1, AreaCode: ptr(int32(11)), Number: "912345678", Extension: ptr("ext 9")},
		{CountryCode: 55, Number: "912345678", Extension: ptr("ext 9")},
		{CountryCode: 55, AreaCode: ptr(int32(0)), Number: "912345678", Extension: ptr("ext 9")},
		{CountryCode: 55, AreaCode: ptr(int32(11)), Number: "912345678"},
		{CountryCode: 55, AreaCode: ptr(int32(11)), Number: "9123456789", Extension: ptr("ext 9")},
	}
	for _, p := range same {
		if got, want := p.DuplicateKey(), base.DuplicateKey(); got != want {
			t.Errorf("key of %+v = %q; want %q", p, got, want)
		}
	}
	for _, p := range different {
		if p.DuplicateKey() == base.DuplicateKey() {
			t.Errorf("key of %+v equals the base's %q", p, base.DuplicateKey())
		}
	}
	blank := Phone{CountryCode: 55, Number: "1", Extension: ptr("   ")}
	none := Phone{CountryCode: 55, Number: "1"}
	if blank.DuplicateKey() != none.DuplicateKey() {
		t.Errorf("a blank extension %q differs from none %q", blank.DuplicateKey(), none.DuplicateKey())
	}
}

func TestDraftValidate(t *testing.T) {
	ok := Draft{Number: ptr("+55 (11) 91234"), Type: ptr("MOBILE")}
	cases := []struct {
		name  string
		edit  func(d *Draft)
		field string
	}{
		{"valid", func(d *Draft) {}, ""},
		{"number missing", func(d *Draft) { d.Number = nil }, "number"},
		{"number 16 code points", func(d *Draft) { d.Number = ptr(strings.Repeat("1", 16)) }, "number"},
		{"number plus inside", func(d *Draft) { d.Number = ptr("1+1") }, "number"},
		{"number no digit", func(d *Draft) { d.Number = ptr("+()") }, "number"},
		{"number non-ASCII digit", func(d *Draft) { d.Number = ptr("١") }, "number"},
		{"type missing", func(d *Draft) { d.Type = nil }, "type"},
		{"type unknown", func(d *Draft) { d.Type = ptr("Mobile") }, "type"},
		{"area negative", func(d *Draft) { d.AreaCode = ptr(int64(-1)) }, "area_code"},
		{"area beyond int32", func(d *Draft) { d.AreaCode = ptr(int64(1) << 31) }, "area_code"},
		{"country beyond 99999", func(d *Draft) { d.CountryCode = ptr(int64(100000)) }, "country_code"},
		{"extension 11 code points", func(d *Draft) { d.Extension = ptr(strings.Repeat("é", 11)) }, "extension"},
		{"extension NUL", func(d *Draft) { d.Extension = ptr("ext\x001") }, "extension"},
		{"extension tab", func(d *Draft) { d.Extension = ptr("ext\t1") }, "extension"},
		{"first field in schema order wins", func(d *Draft) { d.Extension = ptr(strings.Repeat("x", 11)); d.Type = ptr("X") }, "type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := ok
			c.edit(&d)
			err := d.Validate()
			var fe *FieldError
			switch {
			case c.field == "" && err != nil:
				t.Fatalf("Validate() = %v; want nil", err)
			case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
				t.Fatalf("Validate() = %v; want a FieldError on %s", err, c.field)
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	c, err := New("TN-1", 5, nil, Draft{Number: ptr("1"), Type: ptr("MOBILE")})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Phone(); !p.Active || p.CountryCode != DefaultCountryCode {
		t.Errorf("active %v country %d; want true and %d", p.Active, p.CountryCode, DefaultCountryCode)
	}
	c, err = New("TN-1", 5, nil, Draft{Number: ptr("1"), Type: ptr("MOBILE"), Active: ptr(false), CountryCode: ptr(int64(0))})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Phone(); p.Active || p.CountryCode != 0 {
		t.Errorf("active %v country %d; want the values sent: false and 0", p.Active, p.CountryCode)
	}
}
