// Package storetest is the contract suite every phone store passes, run by
// each store's own tests against a real database.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/phone"
)

// Store is what the suite exercises.
type Store interface {
	phone.Store
	outbox.Store
	OutboxStats(ctx context.Context) (int64, time.Time, error)
	CreatePhones(ctx context.Context, cs []phone.Creation) ([]phone.Outcome, error)
}

// Run runs the suite; open returns a fresh, empty store for each subtest (the
// caller closes it via t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s Store)
	}{
		{"CreateReadBack", testCreateReadBack},
		{"IDsIncrease", testIDsIncrease},
		{"NotFound", testNotFound},
		{"Duplicate", testDuplicate},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"EventEnvelope", testEventEnvelope},
		{"PendingEventsOrderAndLimit", testPendingEventsOrderAndLimit},
		{"MarkDelivered", testMarkDelivered},
		{"PruneDelivered", testPruneDelivered},
		{"OutboxStats", testOutboxStats},
		{"ListPhones", testListPhones},
		{"ListPhonesPaging", testListPhonesPaging},
		{"UpdatePhone", testUpdatePhone},
		{"SuccessiveUpdates", testSuccessiveUpdates},
		{"UpdateUnchanged", testUpdateUnchanged},
		{"UpdateApplyError", testUpdateApplyError},
		{"UpdateNotFound", testUpdateNotFound},
		{"UpdateDuplicate", testUpdateDuplicate},
		{"DeactivateFreesKey", testDeactivateFreesKey},
		{"UpdateCannotMovePhone", testUpdateCannotMovePhone},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"BatchOutcomes", testBatchOutcomes},
		{"RefusedBatch", testRefusedBatch},
		{"LargeBatch", testLargeBatch},
		{"IdempotencyKeys", testIdempotencyKeys},
		{"IdempotencyKeyExpiry", testIdempotencyKeyExpiry},
		{"EndedContextStoresNothing", testEndedContextStoresNothing},
		{"EndedContextUpdatesNothing", testEndedContextUpdatesNothing},
		{"EndedContextFailsEveryMethod", testEndedContextFailsEveryMethod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, open(t))
		})
	}
}

const (
	tenant  = "tenant-a"
	account = int64(1001)
)

func ptr[T any](v T) *T { return &v }

// draft returns a valid create request body: a mobile number with no
// optional field.
func draft() phone.Draft {
	return phone.Draft{
		Number: ptr("11 99999-0000"),
		Type:   ptr(string(phone.Mobile)),
	}
}

// creation builds the Creation the service would hand to the store.
func creation(t *testing.T, tenant string, account int64, customer *int64, d phone.Draft) phone.Creation {
	t.Helper()
	p, err := phone.New(tenant, account, customer, d)
	if err != nil {
		t.Fatalf("phone.New: %v", err)
	}
	return phone.Creation{
		Phone:   p,
		EventID: uuid.NewString(),
		Audit:   audit(),
	}
}

// audit returns the audit fields of a request, with a new correlation ID.
func audit() phone.Audit {
	return phone.Audit{
		CID:    "cid-" + uuid.NewString(),
		Email:  "ops@example.com",
		Roles:  []string{"admin"},
		Origin: "10.0.0.1",
	}
}

func create(t *testing.T, s Store, c phone.Creation) phone.Phone {
	t.Helper()
	p, err := s.CreatePhone(context.Background(), c)
	if err != nil {
		t.Fatalf("CreatePhone: got error %v; want nil", err)
	}
	return p
}

// settler is a store whose PendingEvents may, for a moment, not yet read
// what was committed: PostgreSQL's reads only the events of transactions
// older than every transaction still running on the server.
type settler interface {
	// SettleOutbox returns once PendingEvents can read every event
	// committed before the call.
	SettleOutbox(ctx context.Context) error
}

// settle waits, on a store that needs it, until PendingEvents can read
// every event committed so far.
func settle(t *testing.T, s Store) {
	t.Helper()
	st, ok := s.(settler)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.SettleOutbox(ctx); err != nil {
		t.Fatalf("SettleOutbox: %v", err)
	}
}

// pending returns the events waiting, every event committed so far among
// them.
func pending(t *testing.T, s Store) []phone.Event {
	t.Helper()
	settle(t, s)
	events, err := s.PendingEvents(context.Background(), 1000)
	if err != nil {
		t.Fatalf("PendingEvents: %v", err)
	}
	return events
}

func seqs(events []phone.Event) []int64 {
	out := make([]int64, len(events))
	for i, ev := range events {
		out[i] = ev.Seq
	}
	return out
}

func eventIDs(events []phone.Event) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.ID
	}
	return out
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprintf("&%q", fmt.Sprint(*p))
}

// checkPhone compares every field of got with want, times to the instant.
func checkPhone(t *testing.T, what string, got, want phone.Phone) {
	t.Helper()
	if got.ID != want.ID {
		t.Errorf("%s: ID: got %d; want %d", what, got.ID, want.ID)
	}
	if got.Tenant != want.Tenant {
		t.Errorf("%s: Tenant: got %q; want %q", what, got.Tenant, want.Tenant)
	}
	if got.AccountID != want.AccountID {
		t.Errorf("%s: AccountID: got %d; want %d", what, got.AccountID, want.AccountID)
	}
	if fmtPtr(got.CustomerID) != fmtPtr(want.CustomerID) {
		t.Errorf("%s: CustomerID: got %s; want %s", what, fmtPtr(got.CustomerID), fmtPtr(want.CustomerID))
	}
	if got.Number != want.Number {
		t.Errorf("%s: Number: got %q; want %q", what, got.Number, want.Number)
	}
	if got.Type != want.Type {
		t.Errorf("%s: Type: got %q; want %q", what, got.Type, want.Type)
	}
	if got.Active != want.Active {
		t.Errorf("%s: Active: got %t; want %t", what, got.Active, want.Active)
	}
	if fmtPtr(got.AreaCode) != fmtPtr(want.AreaCode) {
		t.Errorf("%s: AreaCode: got %s; want %s", what, fmtPtr(got.AreaCode), fmtPtr(want.AreaCode))
	}
	if got.CountryCode != want.CountryCode {
		t.Errorf("%s: CountryCode: got %d; want %d", what, got.CountryCode, want.CountryCode)
	}
	if fmtPtr(got.Extension) != fmtPtr(want.Extension) {
		t.Errorf("%s: Extension: got %s; want %s", what, fmtPtr(got.Extension), fmtPtr(want.Extension))
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("%s: CreatedAt: got %v; want %v", what, got.CreatedAt, want.CreatedAt)
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("%s: UpdatedAt: got %v; want %v", what, got.UpdatedAt, want.UpdatedAt)
	}
	if got.Version != want.Version {
		t.Errorf("%s: Version: got %d; want %d", what, got.Version, want.Version)
	}
}

func testCreateReadBack(t *testing.T, s Store) {
	tests := []struct {
		name     string
		customer *int64
		draft    phone.Draft
	}{
		{"minimal", nil, draft()},
		{"every field", ptr(int64(77)), phone.Draft{
			Number:      ptr("+55 (11)3333.44"),
			Type:        ptr(string(phone.Commercial)),
			Active:      ptr(true),
			AreaCode:    ptr(int64(11)),
			CountryCode: ptr(int64(1)),
			Extension:   ptr(" Ramal 12 "),
		}},
		{"area code zero", nil, phone.Draft{
			Number:   ptr("5555-1234"),
			Type:     ptr(string(phone.Residential)),
			AreaCode: ptr(int64(0)),
		}},
		{"empty extension", nil, phone.Draft{
			Number:    ptr("5555-9999"),
			Type:      ptr(string(phone.Residential)),
			Extension: ptr(""),
		}},
		{"inactive", ptr(int64(0)), phone.Draft{
			Number: ptr("5555-0000"),
			Type:   ptr(string(phone.Mobile)),
			Active: ptr(false),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := creation(t, tenant, account, tt.customer, tt.draft)
			before := time.Now().Truncate(time.Millisecond)
			got := create(t, s, c)
			after := time.Now()

			if got.ID <= 0 {
				t.Errorf("ID: got %d; want > 0", got.ID)
			}
			if loc := got.CreatedAt.Location(); loc != time.UTC {
				t.Errorf("CreatedAt location: got %v; want UTC", loc)
			}
			if ns := got.CreatedAt.Nanosecond() % int(time.Millisecond); ns != 0 {
				t.Errorf("CreatedAt: got %v; want millisecond precision", got.CreatedAt)
			}
			if got.CreatedAt.Before(before) || got.CreatedAt.After(after) {
				t.Errorf("CreatedAt: got %v; want between %v and %v", got.CreatedAt, before, after)
			}
			if !got.UpdatedAt.Equal(got.CreatedAt) {
				t.Errorf("UpdatedAt: got %v; want CreatedAt %v", got.UpdatedAt, got.CreatedAt)
			}
			if got.Version != 1 {
				t.Errorf("Version: got %d; want 1", got.Version)
			}
			want := c.Phone.Phone()
			want.ID, want.CreatedAt, want.UpdatedAt, want.Version = got.ID, got.CreatedAt, got.CreatedAt, 1
			checkPhone(t, "CreatePhone", got, want)

			read, err := s.Phone(context.Background(), tenant, account, got.ID)
			if err != nil {
				t.Fatalf("Phone: got error %v; want nil", err)
			}
			checkPhone(t, "Phone", read, want)
			if loc := read.CreatedAt.Location(); loc != time.UTC {
				t.Errorf("Phone: CreatedAt location: got %v; want UTC", loc)
			}
			if loc := read.UpdatedAt.Location(); loc != time.UTC {
				t.Errorf("Phone: UpdatedAt location: got %v; want UTC", loc)
			}
		})
	}
}

func testIDsIncrease(t *testing.T, s Store) {
	var last int64
	for i := range 5 {
		d := draft()
		d.Number = ptr(fmt.Sprintf("9999-000%d", i))
		p := create(t, s, creation(t, tenant, account, nil, d))
		if p.ID <= last {
			t.Errorf("create %d: ID: got %d; want > %d", i, p.ID, last)
		}
		last = p.ID
	}
}

func testNotFound(t *testing.T, s Store) {
	p := create(t, s, creation(t, tenant, account, nil, draft()))
	for _, tt := range elsewhere(p) {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Phone(context.Background(), tt.tenant, tt.account, tt.id)
			if !errors.Is(err, phone.ErrNotFound) {
				t.Errorf("Phone(%q, %d, %d): got error %v; want phone.ErrNotFound", tt.tenant, tt.account, tt.id, err)
			}
		})
	}
}

// place is where a test looks for a phone: a tenant, an account and an id.
type place struct {
	name    string
	tenant  string
	account int64
	id      int64
}

// elsewhere returns the places where p is not: another id, the same id in
// another account, and in another tenant. A store must not find p at any.
func elsewhere(p phone.Phone) []place {
	return []place{
		{"unknown id", p.Tenant, p.AccountID, p.ID + 1000},
		{"other account", p.Tenant, p.AccountID + 1, p.ID},
		{"other tenant", "tenant-b", p.AccountID, p.ID},
	}
}

func testDuplicate(t *testing.T, s Store) {
	base := draft()
	with := func(f func(d *phone.Draft)) phone.Draft {
		d := draft()
		f(&d)
		return d
	}
	inactive := with(func(d *phone.Draft) { d.Active = ptr(false) })
	tests := []struct {
		name          string
		firstTenant   string
		firstAccount  int64
		first         phone.Draft
		secondTenant  string
		secondAccount int64
		second        phone.Draft
		wantDuplicate bool
	}{
		{"same phone", tenant, 1, base, tenant, 1, base, true},
		{"same digits formatted otherwise", tenant, 2, base, tenant, 2,
			with(func(d *phone.Draft) { d.Number = ptr("(11)99999.0000") }), true},
		{"other type", tenant, 3, base, tenant, 3,
			with(func(d *phone.Draft) { d.Type = ptr(string(phone.Commercial)) }), true},
		{"inactive then active", tenant, 4, inactive, tenant, 4, base, false},
		{"active then inactive", tenant, 5, base, tenant, 5, inactive, false},
		{"inactive twice", tenant, 6, inactive, tenant, 6, inactive, false},
		{"other account", tenant, 7, base, tenant, 8, base, false},
		{"other tenant", tenant, 9, base, "tenant-b", 9, base, false},
		{"area absent then area zero", tenant, 10, base, tenant, 10,
			with(func(d *phone.Draft) { d.AreaCode = ptr(int64(0)) }), false},
		{"other country code", tenant, 11, base, tenant, 11,
			with(func(d *phone.Draft) { d.CountryCode = ptr(int64(1)) }), false},
		{"extension differs only in case and spaces", tenant, 12,
			with(func(d *phone.Draft) { d.Extension = ptr("Ab1") }), tenant, 12,
			with(func(d *phone.Draft) { d.Extension = ptr(" aB1 ") }), true},
		{"extension absent then empty", tenant, 13, base, tenant, 13,
			with(func(d *phone.Draft) { d.Extension = ptr("") }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(pending(t, s))
			first := create(t, s, creation(t, tt.firstTenant, tt.firstAccount, nil, tt.first))
			c := creation(t, tt.secondTenant, tt.secondAccount, nil, tt.second)
			second, err := s.CreatePhone(context.Background(), c)
			events := pending(t, s)

			if !tt.wantDuplicate {
				if err != nil {
					t.Fatalf("second CreatePhone: got error %v; want nil", err)
				}
				if second.ID == first.ID {
					t.Errorf("second ID: got %d; want other than the first's", second.ID)
				}
				if got, want := len(events)-before, 2; got != want {
					t.Errorf("new events: got %d; want %d", got, want)
				}
				return
			}
			if !errors.Is(err, phone.ErrDuplicate) {
				t.Fatalf("second CreatePhone: got error %v; want phone.ErrDuplicate", err)
			}
			if got, want := len(events)-before, 1; got != want {
				t.Errorf("new events: got %d; want %d (the first create's only)", got, want)
			}
			for _, ev := range events {
				if ev.ID == c.EventID {
					t.Errorf("outbox holds the rejected create's event %s", c.EventID)
				}
			}
			// Ids may have gaps on some databases, so the rejected phone
			// is looked for where the next id would be.
			if _, err := s.Phone(context.Background(), tt.secondTenant, tt.secondAccount, first.ID+1); !errors.Is(err, phone.ErrNotFound) {
				t.Errorf("Phone(next id): got error %v; want phone.ErrNotFound", err)
			}
			if _, err := s.Phone(context.Background(), tt.firstTenant, tt.firstAccount, first.ID); err != nil {
				t.Errorf("Phone(first): got error %v; want nil", err)
			}
		})
	}
}

func testConcurrentDuplicates(t *testing.T, s Store) {
	const n = 20
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		c := creation(t, tenant, account, nil, draft())
		wg.Go(func() {
			<-start
			_, errs[i] = s.CreatePhone(context.Background(), c)
		})
	}
	close(start)
	wg.Wait()

	var ok, dup int
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, phone.ErrDuplicate):
			dup++
		default:
			t.Errorf("create %d: got error %v; want nil or phone.ErrDuplicate", i, err)
		}
	}
	if ok != 1 || dup != n-1 {
		t.Errorf("outcomes: got %d created, %d duplicates; want 1, %d", ok, dup, n-1)
	}
	if got := len(pending(t, s)); got != 1 {
		t.Errorf("events: got %d; want 1", got)
	}
}

func testEventEnvelope(t *testing.T, s Store) {
	tests := []struct {
		name          string
		customer      *int64
		draft         phone.Draft
		wantCustomer  any
		wantArea      any
		wantCountry   string
		wantExtension any
	}{
		{"optional fields absent", nil, draft(), nil, nil, "55", nil},
		{"every field", ptr(int64(42)), phone.Draft{
			Number:      ptr("+1 (212)555-01"),
			Type:        ptr(string(phone.Commercial)),
			Active:      ptr(false),
			AreaCode:    ptr(int64(212)),
			CountryCode: ptr(int64(1)),
			Extension:   ptr(" X9 "),
		}, json.Number("42"), "212", "1", " X9 "},
		{"area code zero", nil, phone.Draft{
			Number:   ptr("1234"),
			Type:     ptr(string(phone.Residential)),
			AreaCode: ptr(int64(0)),
		}, nil, "0", "55", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := seqs(pending(t, s))
			c := creation(t, tenant, account, tt.customer, tt.draft)
			p := create(t, s, c)

			events := pending(t, s)
			if got, want := len(events), len(before)+1; got != want {
				t.Fatalf("pending events: got %d; want %d", got, want)
			}
			ev := events[len(events)-1]
			if ev.Seq <= 0 {
				t.Errorf("Seq: got %d; want > 0", ev.Seq)
			}
			want, err := phone.CreatedEvent(c.EventID, p, c.Audit)
			if err != nil {
				t.Fatalf("phone.CreatedEvent: %v", err)
			}
			checkEvent(t, ev, want, phone.EventCreated)

			dec := json.NewDecoder(bytes.NewReader(ev.Payload))
			dec.UseNumber()
			var env map[string]any
			if err := dec.Decode(&env); err != nil {
				t.Fatalf("decode payload %s: %v", ev.Payload, err)
			}
			data, _ := env["data"].(map[string]any)
			obj, _ := data["object"].(map[string]any)
			fields := []struct {
				name      string
				got, want any
			}{
				{"event_id", env["event_id"], c.EventID},
				{"schema_version", env["schema_version"], json.Number("1")},
				{"domain", env["domain"], "audit"},
				{"event_type", env["event_type"], "phone_creation-1"},
				{"org_id", env["org_id"], tenant},
				{"cid", env["cid"], c.Audit.CID},
				{"timestamp", env["timestamp"], p.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z")},
				{"data.email", data["email"], c.Audit.Email},
				{"data.origin", data["origin"], c.Audit.Origin},
				{"data.object.id", obj["id"], json.Number(fmt.Sprint(p.ID))},
				{"data.object.account_id", obj["account_id"], json.Number(fmt.Sprint(account))},
				{"data.object.customer_id", obj["customer_id"], tt.wantCustomer},
				{"data.object.number", obj["number"], *tt.draft.Number},
				{"data.object.type", obj["type"], *tt.draft.Type},
				{"data.object.active", obj["active"], p.Active},
				{"data.object.area_code", obj["area_code"], tt.wantArea},
				{"data.object.country_code", obj["country_code"], tt.wantCountry},
				{"data.object.extension", obj["extension"], tt.wantExtension},
			}
			for _, f := range fields {
				if f.got != f.want {
					t.Errorf("%s: got %#v; want %#v", f.name, f.got, f.want)
				}
			}
			if _, ok := obj["extension"]; !ok {
				t.Errorf("data.object.extension: got absent; want present (null when unset)")
			}
		})
	}
}

// createN creates n distinct phones and returns their event ids in creation
// order.
func createN(t *testing.T, s Store, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		d := draft()
		d.Number = ptr(fmt.Sprintf("3000-%04d", i))
		c := creation(t, tenant, account, nil, d)
		create(t, s, c)
		ids[i] = c.EventID
	}
	return ids
}

func testPendingEventsOrderAndLimit(t *testing.T, s Store) {
	if got := pending(t, s); len(got) != 0 {
		t.Fatalf("pending events of an empty store: got %d; want 0", len(got))
	}
	ids := createN(t, s, 5)
	settle(t, s)
	tests := []struct {
		limit int
		want  []string
	}{
		{1, ids[:1]},
		{3, ids[:3]},
		{5, ids},
		{10, ids},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("limit %d", tt.limit), func(t *testing.T) {
			events, err := s.PendingEvents(context.Background(), tt.limit)
			if err != nil {
				t.Fatalf("PendingEvents: %v", err)
			}
			if got := eventIDs(events); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("event ids: got %v; want %v", got, tt.want)
			}
			for i := 1; i < len(events); i++ {
				if events[i].Seq <= events[i-1].Seq {
					t.Errorf("seqs: got %v; want increasing", seqs(events))
					break
				}
			}
		})
	}
}

func testMarkDelivered(t *testing.T, s Store) {
	ctx := context.Background()
	ids := createN(t, s, 5)
	all := pending(t, s)

	steps := []struct {
		name    string
		through int64
		want    []string
	}{
		{"nothing", 0, ids},
		{"through the second", all[1].Seq, ids[2:]},
		{"again", all[1].Seq, ids[2:]},
		{"back to the first: the position never moves back", all[0].Seq, ids[2:]},
		{"through the fourth", all[3].Seq, ids[4:]},
		{"through the last", all[4].Seq, []string{}},
	}
	for _, st := range steps {
		if err := s.MarkDelivered(ctx, st.through, 0); err != nil {
			t.Fatalf("%s: MarkDelivered: got error %v; want nil", st.name, err)
		}
		if got := eventIDs(pending(t, s)); fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Errorf("%s: pending after MarkDelivered: got %v; want %v", st.name, got, st.want)
		}
	}
}

func testPruneDelivered(t *testing.T, s Store) {
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	ids := createN(t, s, 3)
	all := pending(t, s)
	if err := s.MarkDelivered(ctx, all[1].Seq, 0); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	after := time.Now().Add(time.Second)

	steps := []struct {
		name        string
		cutoff      time.Time
		wantDeleted int64
	}{
		{"cutoff before their creation", before, 0},
		{"cutoff after it", after, 2},
		{"again", after, 0},
	}
	for _, st := range steps {
		n, err := s.PruneDelivered(ctx, st.cutoff)
		if err != nil {
			t.Fatalf("%s: PruneDelivered: got error %v; want nil", st.name, err)
		}
		if n != st.wantDeleted {
			t.Errorf("%s: deleted: got %d; want %d", st.name, n, st.wantDeleted)
		}
		if got, want := eventIDs(pending(t, s)), ids[2:]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: pending: got %v; want %v", st.name, got, want)
		}
	}
	// The undelivered event survives any cutoff; once delivered, it goes too.
	if err := s.MarkDelivered(ctx, all[2].Seq, 0); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	if n, err := s.PruneDelivered(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Errorf("PruneDelivered after delivering the last: got %d, %v; want 1, nil", n, err)
	}
	// Pruned, the outbox is empty, and what comes next waits again.
	d := draft()
	d.Number = ptr("3000-9999")
	c := creation(t, tenant, account, nil, d)
	create(t, s, c)
	if got := eventIDs(pending(t, s)); fmt.Sprint(got) != fmt.Sprint([]string{c.EventID}) {
		t.Errorf("pending after pruning everything and creating one: got %v; want [%s]", got, c.EventID)
	}
}

func testOutboxStats(t *testing.T, s Store) {
	ctx := context.Background()
	check := func(step string, wantPending int64, wantOldest time.Time) {
		t.Helper()
		n, oldest, err := s.OutboxStats(ctx)
		if err != nil {
			t.Fatalf("%s: OutboxStats: got error %v; want nil", step, err)
		}
		if n != wantPending {
			t.Errorf("%s: pending: got %d; want %d", step, n, wantPending)
		}
		if !oldest.Equal(wantOldest) || oldest.IsZero() != wantOldest.IsZero() {
			t.Errorf("%s: oldest: got %v; want %v", step, oldest, wantOldest)
		}
	}

	check("empty", 0, time.Time{})
	createN(t, s, 3)
	all := pending(t, s)
	check("three created", 3, all[0].CreatedAt)
	if err := s.MarkDelivered(ctx, all[0].Seq, 0); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	check("first delivered", 2, all[1].CreatedAt)
	if err := s.MarkDelivered(ctx, all[2].Seq, 0); err != nil {
		t.Fatalf("MarkDelivered: %v", err)
	}
	check("all delivered", 0, time.Time{})
}

// endedContexts are the two ways a caller's context ends.
func endedContexts() []struct {
	name string
	ctx  func() (context.Context, context.CancelFunc)
	want error
} {
	return []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"deadline exceeded", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		}, context.DeadlineExceeded},
	}
}

func testEndedContextStoresNothing(t *testing.T, s Store) {
	for i, tt := range endedContexts() {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			d := draft()
			d.Number = ptr(fmt.Sprintf("4000-%04d", i))
			c := creation(t, tenant, account, nil, d)
			before := len(pending(t, s))

			if _, err := s.CreatePhone(ctx, c); !errors.Is(err, tt.want) {
				t.Fatalf("CreatePhone: got error %v; want %v", err, tt.want)
			}
			if got := len(pending(t, s)) - before; got != 0 {
				t.Errorf("new events: got %d; want 0", got)
			}
			// Had the phone been stored, creating it again would be a
			// duplicate.
			create(t, s, c)
			if got := len(pending(t, s)) - before; got != 1 {
				t.Errorf("new events after retrying: got %d; want 1", got)
			}
		})
	}
}

func testEndedContextFailsEveryMethod(t *testing.T, s Store) {
	for _, tt := range endedContexts() {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			calls := []struct {
				name string
				call func() error
			}{
				{"CreatePhone", func() error {
					_, err := s.CreatePhone(ctx, creation(t, tenant, account, nil, draft()))
					return err
				}},
				{"Phone", func() error { _, err := s.Phone(ctx, tenant, account, 1); return err }},
				{"ListPhones", func() error {
					_, err := s.ListPhones(ctx, phone.ListQuery{Tenant: tenant, AccountID: account, Limit: 10})
					return err
				}},
				{"UpdatePhone", func() error {
					_, err := s.UpdatePhone(ctx, change(tenant, account, 1, func(p *phone.Phone) { p.Active = false }).Change)
					return err
				}},
				{"PendingEvents", func() error { _, err := s.PendingEvents(ctx, 10); return err }},
				{"MarkDelivered", func() error { return s.MarkDelivered(ctx, 1, 0) }},
				{"PruneDelivered", func() error { _, err := s.PruneDelivered(ctx, time.Now()); return err }},
				{"OutboxStats", func() error { _, _, err := s.OutboxStats(ctx); return err }},
			}
			for _, c := range calls {
				if err := c.call(); !errors.Is(err, tt.want) {
					t.Errorf("%s: got error %v; want %v", c.name, err, tt.want)
				}
			}
		})
	}
}
