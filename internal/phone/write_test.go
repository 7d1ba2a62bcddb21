package phone

import (
	"bytes"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestCreationOfNoCandidate checks the zero Candidate, the one value New
// did not make, is refused rather than stored.
func TestCreationOfNoCandidate(t *testing.T) {
	if _, err := (Creation{EventID: "0190a0b0-0000-7000-8000-000000000001"}).Write(1, time.Now()); err == nil {
		t.Error("Write of the zero Candidate: got nil error; want one")
	}
}

// TestValidatedInputsKeepTheirOwnCopies checks what New and Patch.Validate
// checked cannot be changed afterwards through the caller's pointers.
func TestValidatedInputsKeepTheirOwnCopies(t *testing.T) {
	number, typ, ext := "1234", "MOBILE", "x1"
	c, err := New("TN-1", 1, nil, Draft{Number: &number, Type: &typ, Extension: &ext})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Patch{Draft: Draft{Number: &number, Extension: &ext}}.Validate()
	if err != nil {
		t.Fatal(err)
	}
	number, ext = "not a number", "\x00"
	if p := c.Phone(); p.Number != "1234" || *p.Extension != "x1" {
		t.Errorf("candidate after the draft changed: number %q, extension %q; want 1234 and x1", p.Number, *p.Extension)
	}
	*c.Phone().Extension = "\x00"
	if p := c.Phone(); *p.Extension != "x1" {
		t.Errorf("candidate after a read copy changed: extension %q; want x1", *p.Extension)
	}
	if next, _ := v.apply(c.Phone()); next.Number != "1234" || *next.Extension != "x1" {
		t.Errorf("patch after its draft changed: number %q, extension %q; want 1234 and x1", next.Number, *next.Extension)
	}
}

// TestCreationWrite checks everything a create writes comes from the
// creation and the id and time the store chose.
func TestCreationWrite(t *testing.T) {
	p, err := New("TN-a", 7, ptr(int64(9)), Draft{Number: ptr("11 91234-5678"), Type: ptr("MOBILE"), Extension: ptr(" X1 ")})
	if err != nil {
		t.Fatal(err)
	}
	a := Audit{CID: "cid", Email: "e@example.com", Roles: []string{"admin"}, Origin: "10.0.0.1", TraceParent: "00-tp"}
	c := Creation{Phone: p, EventID: "0190a0b0-0000-7000-8000-000000000001", Audit: a}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)

	w, err := c.Write(42, at)
	if err != nil {
		t.Fatal(err)
	}
	want := p.Phone()
	want.ID, want.CreatedAt, want.UpdatedAt, want.Version = 42, at, at, 1
	if !reflect.DeepEqual(w.Phone, want) {
		t.Errorf("Phone: got %+v; want %+v", w.Phone, want)
	}
	if got, wantKey := w.Key, want.DuplicateKey(); got != wantKey {
		t.Errorf("Key: got %q; want %q", got, wantKey)
	}
	ev, err := CreatedEvent(c.EventID, want, a)
	if err != nil {
		t.Fatal(err)
	}
	if w.Event.ID != ev.ID || w.Event.Type != EventCreated || !w.Event.CreatedAt.Equal(at) || w.Event.TraceParent != "00-tp" || !bytes.Equal(w.Event.Payload, ev.Payload) {
		t.Errorf("Event: got %+v; want %+v", w.Event, ev)
	}
}

// TestChanged checks that a change writes the next version, its key and
// its event, and cannot move the phone whatever next says.
func TestChanged(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cur := Phone{ID: 5, Tenant: "TN-a", AccountID: 7, CustomerID: ptr(int64(9)), Number: "1", Type: Mobile, Active: true,
		CountryCode: 55, CreatedAt: created, UpdatedAt: created.Add(time.Minute), Version: 3}
	next := cur
	next.Number, next.Extension = "2", ptr("9")
	next.ID, next.Tenant, next.AccountID, next.CustomerID = 6, "TN-b", 8, nil
	next.CreatedAt, next.UpdatedAt, next.Version = time.Time{}, time.Time{}, 99
	at := created.Add(time.Hour)

	w, err := Changed(cur, next, at, "0190a0b0-0000-7000-8000-000000000002", Audit{CID: "cid"})
	if err != nil {
		t.Fatal(err)
	}
	want := cur
	want.Number, want.Extension, want.UpdatedAt, want.Version = "2", next.Extension, at, 4
	if !reflect.DeepEqual(w.Phone, want) {
		t.Errorf("Phone: got %+v; want %+v", w.Phone, want)
	}
	if got, wantKey := w.Key, want.DuplicateKey(); got != wantKey {
		t.Errorf("Key: got %q; want %q", got, wantKey)
	}
	ev, err := ChangedEvent("0190a0b0-0000-7000-8000-000000000002", want, Audit{CID: "cid"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Event.Type != EventChanged || !w.Event.CreatedAt.Equal(at) || !bytes.Equal(w.Event.Payload, ev.Payload) {
		t.Errorf("Event: got %+v; want %+v", w.Event, ev)
	}
}

// TestTemplate holds Creation.Template to Creation.Write: the template
// completed with an id and a time is the event Write encodes for them, on
// phones and audits whose own fields look like ids and times.
func TestTemplate(t *testing.T) {
	stamp := "2026-12-06T10:11:12.345Z"
	for i, a := range []Audit{{}, {CID: "12345", Email: stamp, Roles: []string{stamp}, Origin: "1"}, {CID: "\\u2028<&>", TraceParent: "00-x"}} {
		d := Draft{Number: ptr("1234567"), Type: ptr("MOBILE"), Extension: ptr(stamp[:10])}
		c, err := New("TN-"+stamp, 12345, ptr(int64(12345)), d)
		if err != nil {
			t.Fatal(err)
		}
		cr := Creation{Phone: c, EventID: "0190a0b0-0000-7000-8000-00000000000" + strconv.Itoa(i), Audit: a}
		tpl, err := cr.Template()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []int64{1, 12345, 9223372036854775807} {
			at := time.Date(2026, 12, 6, 10, 11, 12, 345e6, time.UTC)
			want, err := cr.Write(id, at)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Concat(tpl.Head, []byte(at.Format(TimestampLayout)), tpl.Mid, strconv.AppendInt(nil, id, 10), tpl.Tail)
			if !bytes.Equal(got, want.Event.Payload) {
				t.Errorf("audit %d, id %d:\ngot  %s\nwant %s", i, id, got, want.Event.Payload)
			}
			w := tpl.Write
			w.Phone.ID, w.Phone.CreatedAt, w.Phone.UpdatedAt = id, at, at
			w.Event.Payload, w.Event.CreatedAt = want.Event.Payload, at
			if !reflect.DeepEqual(w, want) {
				t.Errorf("audit %d, id %d: template's write %+v; want %+v", i, id, w, want)
			}
		}
	}
}
