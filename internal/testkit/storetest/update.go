package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/phonesd/phonesd/internal/phone"
)

// changeOf is a Change and what its event must say.
type changeOf struct {
	phone.Change
	eventID string
	audit   phone.Audit
}

// change builds a Change whose Apply reports as changed the current phone
// edited by edit, written as the domain writes a change (phone.Changed),
// as the service's patches do.
func change(tenant string, account, id int64, edit func(p *phone.Phone)) changeOf {
	c := changeOf{eventID: uuid.NewString(), audit: audit()}
	c.Change = phone.Change{
		Tenant:    tenant,
		AccountID: account,
		ID:        id,
		Apply: func(cur phone.Phone, at time.Time) (phone.Write, bool, error) {
			next := cur
			edit(&next)
			w, err := phone.Changed(cur, next, at, c.eventID, c.audit)
			return w, true, err
		},
	}
	return c
}

func update(t *testing.T, s Store, c changeOf) phone.Phone {
	t.Helper()
	p, err := s.UpdatePhone(context.Background(), c.Change)
	if err != nil {
		t.Fatalf("UpdatePhone: got error %v; want nil", err)
	}
	return p
}

func read(t *testing.T, s Store, p phone.Phone) phone.Phone {
	t.Helper()
	got, err := s.Phone(context.Background(), p.Tenant, p.AccountID, p.ID)
	if err != nil {
		t.Fatalf("Phone(%d): got error %v; want nil", p.ID, err)
	}
	return got
}

// numbered returns the default draft with a number of its own.
func numbered(i int) phone.Draft {
	d := draft()
	d.Number = ptr(fmt.Sprintf("6000-%04d", i))
	return d
}

// checkUnchanged checks that p is stored as it was and that the outbox holds
// no event beyond its first eventsBefore.
func checkUnchanged(t *testing.T, s Store, p phone.Phone, eventsBefore int) {
	t.Helper()
	checkPhone(t, "Phone", read(t, s, p), p)
	if got := len(pending(t, s)) - eventsBefore; got != 0 {
		t.Errorf("new events: got %d; want 0", got)
	}
}

// decodeEnvelope decodes an event's payload, keeping numbers as
// json.Number, and returns it with its data and data.object.
func decodeEnvelope(t *testing.T, payload []byte) (env, data, obj map[string]any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		t.Fatalf("decode payload %s: %v", payload, err)
	}
	data, _ = env["data"].(map[string]any)
	obj, _ = data["object"].(map[string]any)
	return env, data, obj
}

// checkEvent checks that the stored event got is want, the event the
// domain builds for the write, and of type typ in the phones' domain: the
// store wrote it as it was given, with the time of its phone's write.
func checkEvent(t *testing.T, got, want phone.Event, typ string) {
	t.Helper()
	if got.ID != want.ID {
		t.Errorf("event ID: got %q; want %q", got.ID, want.ID)
	}
	if got.Domain != phone.EventDomain || got.Type != typ {
		t.Errorf("event domain and type: got %q %q; want %q %q", got.Domain, got.Type, phone.EventDomain, typ)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("event CreatedAt: got %v; want %v", got.CreatedAt, want.CreatedAt)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("event Payload:\ngot  %s\nwant %s", got.Payload, want.Payload)
	}
}

// checkChangedEvent checks that ev is the Phone updated event of c, holding
// p's full state.
func checkChangedEvent(t *testing.T, ev phone.Event, c changeOf, p phone.Phone) {
	t.Helper()
	want, err := phone.ChangedEvent(c.eventID, p, c.audit)
	if err != nil {
		t.Fatalf("phone.ChangedEvent: %v", err)
	}
	checkEvent(t, ev, want, phone.EventChanged)

	env, data, obj := decodeEnvelope(t, ev.Payload)
	var customer, area, extension any
	if p.CustomerID != nil {
		customer = json.Number(strconv.FormatInt(*p.CustomerID, 10))
	}
	if p.AreaCode != nil {
		area = strconv.Itoa(int(*p.AreaCode))
	}
	if p.Extension != nil {
		extension = *p.Extension
	}
	fields := []struct {
		name      string
		got, want any
	}{
		{"event_id", env["event_id"], c.eventID},
		{"event_type", env["event_type"], "phone_change-1"},
		{"org_id", env["org_id"], p.Tenant},
		{"cid", env["cid"], c.audit.CID},
		{"timestamp", env["timestamp"], p.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z")},
		{"data.method", data["method"], "PATCH"},
		{"data.uri", data["uri"], "/v1/accounts/:accountId/phones/:phoneId"},
		{"data.email", data["email"], c.audit.Email},
		{"data.object.id", obj["id"], json.Number(strconv.FormatInt(p.ID, 10))},
		{"data.object.account_id", obj["account_id"], json.Number(strconv.FormatInt(p.AccountID, 10))},
		{"data.object.customer_id", obj["customer_id"], customer},
		{"data.object.number", obj["number"], p.Number},
		{"data.object.type", obj["type"], string(p.Type)},
		{"data.object.active", obj["active"], p.Active},
		{"data.object.area_code", obj["area_code"], area},
		{"data.object.country_code", obj["country_code"], strconv.Itoa(int(p.CountryCode))},
		{"data.object.extension", obj["extension"], extension},
	}
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("event %s: got %#v; want %#v", f.name, f.got, f.want)
		}
	}
}

func testUpdatePhone(t *testing.T, s Store) {
	tests := []struct {
		name  string
		start func(d *phone.Draft) // adjusts the created phone, when not nil
		edit  func(p *phone.Phone)
	}{
		{"number", nil, func(p *phone.Phone) { p.Number = "(11) 98888-7777" }},
		{"type", nil, func(p *phone.Phone) { p.Type = phone.Commercial }},
		{"deactivate", nil, func(p *phone.Phone) { p.Active = false }},
		{"reactivate", func(d *phone.Draft) { d.Active = ptr(false) }, func(p *phone.Phone) { p.Active = true }},
		{"area code", nil, func(p *phone.Phone) { p.AreaCode = ptr(int32(21)) }},
		{"area code zero", nil, func(p *phone.Phone) { p.AreaCode = ptr(int32(0)) }},
		{"area code cleared", func(d *phone.Draft) { d.AreaCode = ptr(int64(11)) }, func(p *phone.Phone) { p.AreaCode = nil }},
		{"country code", nil, func(p *phone.Phone) { p.CountryCode = 1 }},
		{"extension", nil, func(p *phone.Phone) { p.Extension = ptr(" Ramal 7 ") }},
		{"extension cleared", func(d *phone.Draft) { d.Extension = ptr("12") }, func(p *phone.Phone) { p.Extension = nil }},
		{"every field", nil, func(p *phone.Phone) {
			p.Number = "+1 (212)555-01"
			p.Type = phone.Residential
			p.Active = false
			p.AreaCode = ptr(int32(212))
			p.CountryCode = 1
			p.Extension = ptr("X9")
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := numbered(i)
			if tt.start != nil {
				tt.start(&d)
			}
			created := create(t, s, creation(t, tenant, account, ptr(int64(42)), d))
			before := len(pending(t, s))
			c := change(tenant, account, created.ID, tt.edit)

			start := time.Now().Truncate(time.Millisecond)
			got := update(t, s, c)
			end := time.Now()

			if got.Version != 2 {
				t.Errorf("Version: got %d; want 2", got.Version)
			}
			if loc := got.UpdatedAt.Location(); loc != time.UTC {
				t.Errorf("UpdatedAt location: got %v; want UTC", loc)
			}
			if ns := got.UpdatedAt.Nanosecond() % int(time.Millisecond); ns != 0 {
				t.Errorf("UpdatedAt: got %v; want millisecond precision", got.UpdatedAt)
			}
			if got.UpdatedAt.Before(start) || got.UpdatedAt.After(end) {
				t.Errorf("UpdatedAt: got %v; want between %v and %v", got.UpdatedAt, start, end)
			}
			if got.UpdatedAt.Before(got.CreatedAt) {
				t.Errorf("UpdatedAt: got %v; want at or after CreatedAt %v", got.UpdatedAt, got.CreatedAt)
			}
			want := created
			tt.edit(&want)
			want.Version, want.UpdatedAt = 2, got.UpdatedAt
			checkPhone(t, "UpdatePhone", got, want)
			checkPhone(t, "Phone", read(t, s, created), want)
			listed := listPhones(t, s, phone.ListQuery{Tenant: tenant, AccountID: account, AfterID: created.ID - 1, Limit: 1})
			if len(listed) != 1 {
				t.Fatalf("ListPhones: got %d phones; want 1", len(listed))
			}
			checkPhone(t, "ListPhones", listed[0], want)

			events := pending(t, s)
			if got := len(events) - before; got != 1 {
				t.Fatalf("new events: got %d; want 1", got)
			}
			checkChangedEvent(t, events[len(events)-1], c, want)
		})
	}
}

func testSuccessiveUpdates(t *testing.T, s Store) {
	p := create(t, s, creation(t, tenant, account, nil, draft()))
	before := len(pending(t, s))
	edits := []func(p *phone.Phone){
		func(p *phone.Phone) { p.Type = phone.Commercial },
		func(p *phone.Phone) { p.Extension = ptr("1") },
		func(p *phone.Phone) { p.Active = false },
	}
	var (
		changes []changeOf
		states  []phone.Phone
	)
	for i, edit := range edits {
		c := change(tenant, account, p.ID, edit)
		next := update(t, s, c)
		if got, want := next.Version, int64(i+2); got != want {
			t.Errorf("update %d: Version: got %d; want %d", i, got, want)
		}
		if next.UpdatedAt.Before(p.UpdatedAt) {
			t.Errorf("update %d: UpdatedAt: got %v; want at or after the previous %v", i, next.UpdatedAt, p.UpdatedAt)
		}
		want := p
		edit(&want)
		want.Version, want.UpdatedAt = next.Version, next.UpdatedAt
		checkPhone(t, fmt.Sprintf("update %d", i), next, want)
		changes, states = append(changes, c), append(states, next)
		p = next
	}
	events := pending(t, s)[before:]
	if len(events) != len(edits) {
		t.Fatalf("new events: got %d; want %d", len(events), len(edits))
	}
	for i, ev := range events {
		checkChangedEvent(t, ev, changes[i], states[i])
	}
}

func testUpdateUnchanged(t *testing.T, s Store) {
	tests := []struct {
		name  string
		apply func(cur phone.Phone, at time.Time) (phone.Write, bool, error)
	}{
		{"same phone", func(cur phone.Phone, at time.Time) (phone.Write, bool, error) {
			return phone.Write{Phone: cur}, false, nil
		}},
		// The store trusts Apply's report, as the service decides what a change is.
		{"other phone reported unchanged", func(cur phone.Phone, at time.Time) (phone.Write, bool, error) {
			next := cur
			next.Number = "7777-7777"
			w, err := phone.Changed(cur, next, at, uuid.NewString(), audit())
			return w, false, err
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			created := create(t, s, creation(t, tenant, account, nil, numbered(i)))
			before := len(pending(t, s))
			c := change(tenant, account, created.ID, nil)
			c.Apply = tt.apply

			got := update(t, s, c)
			checkPhone(t, "UpdatePhone", got, created)
			checkUnchanged(t, s, created, before)

			// The next change still follows version 1.
			next := update(t, s, change(tenant, account, created.ID, func(p *phone.Phone) { p.Active = false }))
			if next.Version != 2 {
				t.Errorf("next update: Version: got %d; want 2", next.Version)
			}
		})
	}
}

func testUpdateApplyError(t *testing.T, s Store) {
	fieldErr := &phone.FieldError{Field: "number", Message: "number is invalid"}
	tests := []struct {
		name string
		err  error
	}{
		{"precondition failed", phone.ErrPrecondition},
		{"field error", fieldErr},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			created := create(t, s, creation(t, tenant, account, nil, numbered(i)))
			before := len(pending(t, s))
			c := change(tenant, account, created.ID, nil)
			c.Apply = func(cur phone.Phone, at time.Time) (phone.Write, bool, error) {
				next := cur
				next.Number = "7777-7777"
				w, _ := phone.Changed(cur, next, at, uuid.NewString(), audit())
				return w, true, tt.err
			}

			_, err := s.UpdatePhone(context.Background(), c.Change)
			if !errors.Is(err, tt.err) {
				t.Fatalf("UpdatePhone: got error %v; want %v", err, tt.err)
			}
			checkUnchanged(t, s, created, before)

			// Nothing of the failed change stays locked.
			next := update(t, s, change(tenant, account, created.ID, func(p *phone.Phone) { p.Active = false }))
			if next.Version != 2 {
				t.Errorf("next update: Version: got %d; want 2", next.Version)
			}
		})
	}
}

func testUpdateNotFound(t *testing.T, s Store) {
	p := create(t, s, creation(t, tenant, account, nil, draft()))
	for _, tt := range elsewhere(p) {
		t.Run(tt.name, func(t *testing.T) {
			before := len(pending(t, s))
			called := false
			c := change(tt.tenant, tt.account, tt.id, nil)
			c.Apply = func(cur phone.Phone, at time.Time) (phone.Write, bool, error) {
				called = true
				next := cur
				next.Active = false
				w, err := phone.Changed(cur, next, at, uuid.NewString(), audit())
				return w, true, err
			}
			_, err := s.UpdatePhone(context.Background(), c.Change)
			if !errors.Is(err, phone.ErrNotFound) {
				t.Errorf("UpdatePhone(%q, %d, %d): got error %v; want phone.ErrNotFound", tt.tenant, tt.account, tt.id, err)
			}
			if called {
				t.Error("Apply: got called; want not called")
			}
			checkUnchanged(t, s, p, before)
		})
	}
}

func testUpdateDuplicate(t *testing.T, s Store) {
	with := func(d phone.Draft, f func(d *phone.Draft)) phone.Draft {
		f(&d)
		return d
	}
	taken := draft() // 11 99999-0000
	inactive := func(d *phone.Draft) { d.Active = ptr(false) }
	free := with(draft(), func(d *phone.Draft) { d.Number = ptr("11 98888-0000") })
	takeNumber := func(p *phone.Phone) { p.Number = *taken.Number }

	tests := []struct {
		name          string
		other         *phone.Draft // created in the target's account first, when not nil
		elsewhere     bool         // other goes to another account
		target        phone.Draft
		edit          func(p *phone.Phone)
		wantDuplicate bool
	}{
		{"number of an active phone", &taken, false, free, takeNumber, true},
		{"same digits formatted otherwise", &taken, false, free,
			func(p *phone.Phone) { p.Number = "(11)99999.0000" }, true},
		{"reactivation onto an active phone's key", &taken, false, with(taken, inactive),
			func(p *phone.Phone) { p.Active = true }, true},
		{"clearing the extension that told them apart", &taken, false,
			with(taken, func(d *phone.Draft) { d.Extension = ptr("9") }),
			func(p *phone.Phone) { p.Extension = nil }, true},
		{"extension differing only in case and spaces",
			new(with(taken, func(d *phone.Draft) { d.Extension = ptr("Ab1") })), false,
			with(taken, func(d *phone.Draft) { d.Extension = ptr("zz") }),
			func(p *phone.Phone) { p.Extension = ptr(" aB1 ") }, true},
		{"reactivation onto an inactive phone's key", new(with(taken, inactive)), false, with(taken, inactive),
			func(p *phone.Phone) { p.Active = true }, false},
		{"inactive phone takes an active phone's key", &taken, false, with(free, inactive), takeNumber, false},
		{"taking the key while deactivating", &taken, false, free,
			func(p *phone.Phone) { p.Number, p.Active = *taken.Number, false }, false},
		{"own key formatted otherwise", nil, false, taken,
			func(p *phone.Phone) { p.Number = "(11) 99999 0000" }, false},
		{"key of a phone of another account", &taken, true, free, takeNumber, false},
		{"type only", &taken, false, with(taken, func(d *phone.Draft) { d.Extension = ptr("9") }),
			func(p *phone.Phone) { p.Type = phone.Residential }, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acct := account + 100 + int64(i)
			var other phone.Phone
			if tt.other != nil {
				otherAcct := acct
				if tt.elsewhere {
					otherAcct += 1000
				}
				other = create(t, s, creation(t, tenant, otherAcct, nil, *tt.other))
			}
			target := create(t, s, creation(t, tenant, acct, nil, tt.target))
			before := len(pending(t, s))

			got, err := s.UpdatePhone(context.Background(), change(tenant, acct, target.ID, tt.edit).Change)
			if tt.other != nil {
				checkPhone(t, "other phone", read(t, s, other), other)
			}
			if !tt.wantDuplicate {
				if err != nil {
					t.Fatalf("UpdatePhone: got error %v; want nil", err)
				}
				if got.Version != 2 {
					t.Errorf("Version: got %d; want 2", got.Version)
				}
				if n := len(pending(t, s)) - before; n != 1 {
					t.Errorf("new events: got %d; want 1", n)
				}
				return
			}
			if !errors.Is(err, phone.ErrDuplicate) {
				t.Fatalf("UpdatePhone: got error %v; want phone.ErrDuplicate", err)
			}
			checkUnchanged(t, s, target, before)
		})
	}
}

// testDeactivateFreesKey walks one key through its life: deactivating a
// phone frees its key, and an inactive phone can still be changed and
// reactivated, unless that collides.
func testDeactivateFreesKey(t *testing.T, s Store) {
	ctx := context.Background()
	first := create(t, s, creation(t, tenant, account, nil, draft()))
	if _, err := s.CreatePhone(ctx, creation(t, tenant, account, nil, draft())); !errors.Is(err, phone.ErrDuplicate) {
		t.Fatalf("CreatePhone while the key is taken: got error %v; want phone.ErrDuplicate", err)
	}

	first = update(t, s, change(tenant, account, first.ID, func(p *phone.Phone) { p.Active = false }))
	second, err := s.CreatePhone(ctx, creation(t, tenant, account, nil, draft()))
	if err != nil {
		t.Fatalf("CreatePhone once the key is free: got error %v; want nil", err)
	}

	first = update(t, s, change(tenant, account, first.ID, func(p *phone.Phone) { p.Extension = ptr("9") }))
	if first.Active || first.Version != 3 {
		t.Errorf("inactive phone updated: got active %t, version %d; want false, 3", first.Active, first.Version)
	}

	before := len(pending(t, s))
	_, err = s.UpdatePhone(ctx, change(tenant, account, first.ID, func(p *phone.Phone) { p.Active, p.Extension = true, nil }).Change)
	if !errors.Is(err, phone.ErrDuplicate) {
		t.Fatalf("reactivating onto the second phone's key: got error %v; want phone.ErrDuplicate", err)
	}
	checkUnchanged(t, s, first, before)

	first = update(t, s, change(tenant, account, first.ID, func(p *phone.Phone) { p.Active = true }))
	if !first.Active || first.Version != 4 {
		t.Errorf("reactivated with its own key: got active %t, version %d; want true, 4", first.Active, first.Version)
	}
	checkPhone(t, "second phone", read(t, s, second), second)
}

func testUpdateCannotMovePhone(t *testing.T, s Store) {
	tests := []struct {
		name     string
		customer *int64
		move     func(p *phone.Phone)
	}{
		{"id", nil, func(p *phone.Phone) { p.ID += 1000 }},
		{"tenant", nil, func(p *phone.Phone) { p.Tenant = "tenant-b" }},
		{"account", nil, func(p *phone.Phone) { p.AccountID++ }},
		{"customer changed", ptr(int64(77)), func(p *phone.Phone) { p.CustomerID = ptr(int64(88)) }},
		{"customer cleared", ptr(int64(77)), func(p *phone.Phone) { p.CustomerID = nil }},
		{"customer set", nil, func(p *phone.Phone) { p.CustomerID = ptr(int64(88)) }},
		{"creation time", nil, func(p *phone.Phone) { p.CreatedAt = p.CreatedAt.Add(-time.Hour) }},
		{"version and update time", nil, func(p *phone.Phone) {
			p.Version = 42
			p.UpdatedAt = p.UpdatedAt.Add(time.Hour)
		}},
		{"all at once", ptr(int64(77)), func(p *phone.Phone) {
			p.ID, p.Tenant, p.AccountID, p.CustomerID = p.ID+1000, "tenant-b", p.AccountID+1, nil
			p.CreatedAt, p.UpdatedAt, p.Version = time.Time{}, time.Time{}, 0
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			created := create(t, s, creation(t, tenant, account, tt.customer, numbered(i)))
			before := len(pending(t, s))
			number := fmt.Sprintf("7777-%04d", i)
			c := change(tenant, account, created.ID, func(p *phone.Phone) {
				p.Number = number
				tt.move(p)
			})
			got := update(t, s, c)

			want := created
			want.Number, want.Version, want.UpdatedAt = number, 2, got.UpdatedAt
			checkPhone(t, "UpdatePhone", got, want)
			checkPhone(t, "Phone", read(t, s, created), want)
			if _, err := s.Phone(context.Background(), "tenant-b", account, created.ID); !errors.Is(err, phone.ErrNotFound) {
				t.Errorf("Phone in the other tenant: got error %v; want phone.ErrNotFound", err)
			}
			if _, err := s.Phone(context.Background(), tenant, account+1, created.ID); !errors.Is(err, phone.ErrNotFound) {
				t.Errorf("Phone in the other account: got error %v; want phone.ErrNotFound", err)
			}
			events := pending(t, s)
			if n := len(events) - before; n != 1 {
				t.Fatalf("new events: got %d; want 1", n)
			}
			checkChangedEvent(t, events[len(events)-1], c, want)
		})
	}
}

// testConcurrentUpdates changes two fields of each phone at once, through
// two changes that each edit only their own field: neither may be lost.
func testConcurrentUpdates(t *testing.T, s Store) {
	const n = 10
	phones := make([]phone.Phone, n)
	for i := range phones {
		phones[i] = create(t, s, creation(t, tenant, account, nil, numbered(i)))
	}
	before := len(pending(t, s))
	extension := func(i int) string { return fmt.Sprintf("x%d", i) }

	start := make(chan struct{})
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i, p := range phones {
		edits := []func(p *phone.Phone){
			func(p *phone.Phone) { p.Type = phone.Commercial },
			func(p *phone.Phone) { p.Extension = ptr(extension(i)) },
		}
		for j, edit := range edits {
			c := change(tenant, account, p.ID, edit)
			wg.Go(func() {
				<-start
				_, errs[2*i+j] = s.UpdatePhone(context.Background(), c.Change)
			})
		}
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("update %d of phone %d: got error %v; want nil", i%2, phones[i/2].ID, err)
		}
	}

	// The events of each phone, in outbox order.
	byPhone := make(map[int64][]map[string]any)
	for _, ev := range pending(t, s)[before:] {
		if ev.Type != phone.EventChanged {
			t.Errorf("event type: got %q; want %q", ev.Type, phone.EventChanged)
			continue
		}
		_, _, obj := decodeEnvelope(t, ev.Payload)
		id, err := obj["id"].(json.Number).Int64()
		if err != nil {
			t.Fatalf("event object id %v: %v", obj["id"], err)
		}
		byPhone[id] = append(byPhone[id], obj)
	}
	for i, p := range phones {
		got := read(t, s, p)
		if got.Type != phone.Commercial || fmtPtr(got.Extension) != fmtPtr(ptr(extension(i))) || got.Version != 3 {
			t.Errorf("phone %d: got type %s, extension %s, version %d; want %s, %s, 3",
				p.ID, got.Type, fmtPtr(got.Extension), got.Version, phone.Commercial, fmtPtr(ptr(extension(i))))
		}
		objs := byPhone[p.ID]
		if len(objs) != 2 {
			t.Errorf("phone %d: change events: got %d; want 2", p.ID, len(objs))
			continue
		}
		// The later event holds both changes, the earlier only one.
		if last := objs[1]; last["type"] != string(phone.Commercial) || last["extension"] != extension(i) {
			t.Errorf("phone %d: last event: got type %v, extension %v; want %s, %s",
				p.ID, last["type"], last["extension"], phone.Commercial, extension(i))
		}
		if first := objs[0]; (first["type"] == string(phone.Commercial)) == (first["extension"] == extension(i)) {
			t.Errorf("phone %d: first event: got type %v, extension %v; want exactly one of the changes",
				p.ID, first["type"], first["extension"])
		}
	}
}

func testEndedContextUpdatesNothing(t *testing.T, s Store) {
	for i, tt := range endedContexts() {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			p := create(t, s, creation(t, tenant, account, nil, numbered(i)))
			before := len(pending(t, s))
			called := false
			c := change(tenant, account, p.ID, func(p *phone.Phone) {
				called = true
				p.Active = false
			})

			if _, err := s.UpdatePhone(ctx, c.Change); !errors.Is(err, tt.want) {
				t.Fatalf("UpdatePhone: got error %v; want %v", err, tt.want)
			}
			if called {
				t.Error("Apply: got called; want not called once ctx has ended")
			}
			checkUnchanged(t, s, p, before)
		})
	}
}
