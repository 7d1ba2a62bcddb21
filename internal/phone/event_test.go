package phone

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"github.com/phonesd/phonesd/api"
)

// trickyStrings are values that take every path of appendString and of
// encoding/json's escaping: HTML characters, control characters, the
// line and paragraph separators JavaScript rejects, DEL, multi-byte text
// and invalid UTF-8.
var trickyStrings = []string{
	"", "plain", "a\"quote", `back\slash`, "<script>&amp;</script>", "tab\there", "nl\nand\r\x00\x01\x1f",
	"\b\f", "\u2028\u2029", "\x7f", "ação", "電話", "emoji 📞", "\xff", "a\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	"ok\xe2\x80", "\ufffd", "'single'", "/slash", strings.Repeat("long ", 100),
}

// checkEncoding fails t when appendEvent's encoding of env differs from
// encoding/json's.
func checkEncoding(t *testing.T, env *api.PhoneEvent) {
	t.Helper()
	want, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendEvent(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("appendEvent of %#v:\n got %s\nwant %s", env, got, want)
	}
}

// TestAppendEventMatchesEncodingJSON encodes events whose every field is
// random (testing/quick fills each field of the contract's types, also a
// field added later) and then strings drawn from trickyStrings, and
// compares each with encoding/json's encoding.
func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	// testing/quick takes a math/rand generator.
	rng := rand.New(rand.NewSource(1))
	pick := func() string { return trickyStrings[rng.Intn(len(trickyStrings))] }
	for i := range 5000 {
		v, ok := quick.Value(reflect.TypeFor[api.PhoneEvent](), rng)
		if !ok {
			t.Fatal("quick.Value cannot make an api.PhoneEvent")
		}
		env := v.Interface().(api.PhoneEvent)
		checkEncoding(t, &env)
		if i%2 == 0 {
			continue
		}
		// Half the events again with tricky strings and nil or empty
		// optional parts.
		for _, s := range []*string{&env.EventID, &env.Domain, &env.EventType, &env.OrgID, &env.CID, &env.Timestamp,
			&env.Data.Method, &env.Data.URI, &env.Data.Email, &env.Data.Origin,
			&env.Data.Object.CountryCode, &env.Data.Object.Number} {
			*s = pick()
		}
		env.Data.Object.Type = api.PhoneType(pick())
		env.Data.Roles = nil
		for range rng.Intn(4) {
			env.Data.Roles = append(env.Data.Roles, pick())
		}
		if rng.Intn(3) == 0 {
			env.Data.Roles = []string{}
		}
		env.Data.Object.AreaCode, env.Data.Object.Extension, env.Data.Object.CustomerID = nil, nil, nil
		if rng.Intn(2) == 0 {
			env.Data.Object.AreaCode, env.Data.Object.Extension = ptr(pick()), ptr(pick())
			env.Data.Object.CustomerID = ptr(rng.Int63() - rng.Int63())
		}
		env.SchemaVersion = rng.Intn(3) - 1
		checkEncoding(t, &env)
	}
}

// TestEventOfAPhoneMatchesEncodingJSON checks the events of phones New
// accepts, created and changed by audits with tricky strings, against
// encoding/json, and that each event's payload is that encoding.
func TestEventOfAPhoneMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 11, 12, 345e6, time.UTC)
	for i, s := range trickyStrings {
		d := Draft{Number: ptr("11 91234-5678"), Type: ptr("MOBILE"), Extension: ptr(s), AreaCode: ptr(int64(i))}
		c, err := New("TN-"+s, int64(i), ptr(int64(i*7)), d)
		if err != nil {
			// An extension New refuses never reaches an event.
			d.Extension, d.AreaCode = nil, nil
			if c, err = New("TN-"+s, int64(i), nil, d); err != nil {
				t.Fatal(err)
			}
		}
		p := c.Phone()
		p.ID, p.CreatedAt = int64(i+1), at
		for _, a := range []Audit{{}, {CID: s, Email: s, Roles: []string{s, "admin"}, Origin: s}} {
			env := envelope("0190a0b0-0000-7000-8000-000000000001", EventCreated, api.EventCreationMethod, api.EventCreationURI, p, a, at)
			checkEncoding(t, &env)
			ev, err := CreatedEvent(env.EventID, p, a)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := json.Marshal(env); !bytes.Equal(ev.Payload, want) {
				t.Errorf("payload %s; want %s", ev.Payload, want)
			}
		}
	}
}

// FuzzAppendEvent compares appendEvent with encoding/json on fuzzed
// strings in every string field.
func FuzzAppendEvent(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s, s, s, int64(len(s)), true)
	}
	f.Fuzz(func(t *testing.T, a, b, c string, n int64, flag bool) {
		env := api.PhoneEvent{
			EventID: a, SchemaVersion: int(n % 7), Domain: b, EventType: c, OrgID: a + b, CID: c, Timestamp: b,
			Data: api.PhoneAudit{Method: a, URI: b, Email: c, Roles: []string{a, b, c}, Origin: a,
				Object: api.AuditedPhone{ID: n, AccountID: -n, CountryCode: b, Number: c, Type: api.PhoneType(a), Active: flag}},
		}
		if flag {
			env.Data.Object.CustomerID, env.Data.Object.AreaCode, env.Data.Object.Extension = &n, &a, &c
			env.Data.Roles = nil
		}
		checkEncoding(t, &env)
	})
}

// BenchmarkEventEncoding compares appendEvent with encoding/json on a
// typical created event.
func BenchmarkEventEncoding(b *testing.B) {
	c, err := New("TN-a", 7, ptr(int64(9)), Draft{Number: ptr("11 91234-5678"), Type: ptr("MOBILE"), AreaCode: ptr(int64(11))})
	if err != nil {
		b.Fatal(err)
	}
	p := c.Phone()
	a := Audit{CID: "0190a0b0-0000-7000-8000-00000000000a", Email: "e@example.com", Roles: []string{"admin", "phones:write"}, Origin: "10.0.0.1"}
	env := envelope("0190a0b0-0000-7000-8000-000000000001", EventCreated, api.EventCreationMethod, api.EventCreationURI, p, a, time.Now())
	b.Run("append", func(b *testing.B) {
		for b.Loop() {
			if _, err := appendEvent(make([]byte, 0, eventSizeHint(&env)), &env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(&env); err != nil {
				b.Fatal(err)
			}
		}
	})
}
