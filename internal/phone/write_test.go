package phone

import (
	"bytes"
	"testing"
	"time"
)

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
	want := p
	want.ID, want.CreatedAt, want.UpdatedAt, want.Version = 42, at, at, 1
	if w.Phone != want {
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
	if w.Phone != want {
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
