package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phonesd/phonesd/api"
	"github.com/phonesd/phonesd/internal/httpapi"
	"github.com/phonesd/phonesd/internal/phone"
)

func ptr[T any](v T) *T { return &v }

// fixture is a small consistent run: a ledger and what a faithful service
// would store, list and deliver for it.
type fixture struct {
	creates []*createEntry
	updates []*updateEntry
	obs     observed
}

func newFixture() *fixture {
	f := &fixture{}
	// #1: acknowledged, then updated once. #2: acknowledged, another tenant.
	// #3: a duplicate of #1, refused. #4: an invalid body, refused.
	// #5: unknown, its retry got a 200. #6: unknown, invalid, its retry a 400.
	f.creates = []*createEntry{
		{Seq: 1, Tenant: "TN-a", Account: 1, Key: "k1", Intent: intentCreate, Draft: draft{Number: "900001", Type: "MOBILE", AreaCode: ptr(11)},
			attempt: attempt{Status: 200, Class: classOK, ID: 1}},
		{Seq: 2, Tenant: "TN-b", Account: 2, Key: "k2", Intent: intentCreate, CustomerID: ptr(int64(7)), Draft: draft{Number: "900002", Type: "RESIDENTIAL", Active: ptr(false)},
			attempt: attempt{Status: 200, Class: classOK, ID: 2}},
		{Seq: 3, Tenant: "TN-a", Account: 1, Key: "k3", Intent: intentDuplicate, Draft: draft{Number: "900001", Type: "MOBILE", AreaCode: ptr(11)},
			attempt: attempt{Status: 409, Class: classFailed, Message: httpapi.Message(phone.ErrDuplicate)}},
		{Seq: 4, Tenant: "TN-a", Account: 3, Key: "k4", Intent: intentInvalid, Draft: draft{Number: "900004", Type: "FAX"},
			attempt: attempt{Status: 400, Class: classFailed}},
		{Seq: 5, Tenant: "TN-b", Account: 1, Key: "k5", Intent: intentCreate, Draft: draft{Number: "900005", Type: "MOBILE", Extension: ptr("ext 1")},
			attempt: attempt{Err: "timeout", Class: classUnknown}, Retry: &attempt{Status: 200, Class: classOK, ID: 3}},
		{Seq: 6, Tenant: "TN-b", Account: 1, Key: "k6", Intent: intentInvalid, Draft: draft{Number: "900006", Type: "FAX"},
			attempt: attempt{Err: "connection reset", Class: classUnknown}, Retry: &attempt{Status: 400, Class: classFailed}},
	}
	f.updates = []*updateEntry{
		{Seq: 7, PhoneID: 1, Tenant: "TN-a", Account: 1, IfMatch: 1, Patch: patch{Extension: "u000000007", Active: ptr(false)},
			attempt: attempt{Status: 200, Class: classOK}, NewVersion: 2},
		{Seq: 8, PhoneID: 2, Tenant: "TN-b", Account: 2, IfMatch: 1, Patch: patch{Extension: "u000000008", Active: ptr(true)},
			attempt: attempt{Status: 409, Class: classFailed, Message: httpapi.Message(phone.ErrDuplicate)}},
	}
	p1 := f.creates[0].state(1)
	p1changed := f.updates[0].Patch.apply(p1)
	p2 := f.creates[1].state(2)
	p3 := f.creates[4].state(3)
	f.obs = observed{
		Rows: []phoneState{p1changed, p2, p3},
		Deliveries: []delivery{
			{Source: "events.jsonl", EventID: "e1", Type: api.EventPhoneCreation, Object: p1},
			{Source: "events.jsonl", EventID: "e2", Type: api.EventPhoneCreation, Object: p2},
			{Source: "events.jsonl", EventID: "e3", Type: api.EventPhoneCreation, Object: p3},
			{Source: "events.jsonl", EventID: "e4", Type: api.EventPhoneChange, Object: p1changed},
		},
		Outbox: map[string]int64{"e1": 1, "e2": 2, "e3": 3, "e4": 4},
	}
	for _, tn := range []string{"TN-a", "TN-b"} {
		for acct := int64(1); acct <= 3; acct++ {
			l := listing{Tenant: tn, Account: acct}
			for _, r := range f.obs.Rows {
				if r.Tenant == tn && r.AccountID == acct {
					l.Phones = append(l.Phones, r)
				}
			}
			f.obs.Listings = append(f.obs.Listings, l)
		}
	}
	return f
}

func (f *fixture) row(id int64) *phoneState {
	for i := range f.obs.Rows {
		if f.obs.Rows[i].ID == id {
			return &f.obs.Rows[i]
		}
	}
	panic(fmt.Sprintf("no row %d", id))
}

func (f *fixture) delivery(eventID string) *delivery {
	for i := range f.obs.Deliveries {
		if f.obs.Deliveries[i].EventID == eventID {
			return &f.obs.Deliveries[i]
		}
	}
	panic("no event " + eventID)
}

func kinds(vs []violation) []string {
	var out []string
	for _, v := range vs {
		if !slices.Contains(out, v.Kind) {
			out = append(out, v.Kind)
		}
	}
	slices.Sort(out)
	return out
}

func TestVerifyAcceptsAFaithfulRun(t *testing.T) {
	f := newFixture()
	tl, vs := verify(f.creates, f.updates, f.obs)
	if len(vs) != 0 {
		t.Fatalf("violations %v; want none", vs)
	}
	want := tally{Creates: 6, OK: 2, Failed: 2, Unknown: 2, UnknownCreated: 1, UnknownNone: 1,
		Updates: 2, UpdatesOK: 1, UpdatesFailed: 1, Phones: 3, Events: 4, Deliveries: 4}
	if tl != want {
		t.Errorf("tally %+v; want %+v", tl, want)
	}
}

func TestVerifyDetectsEachViolation(t *testing.T) {
	tests := []struct {
		name   string
		change func(f *fixture)
		want   string // a kind that must be among the violations
	}{
		{"lost acknowledged phone", func(f *fixture) {
			f.obs.Rows = slices.DeleteFunc(f.obs.Rows, func(r phoneState) bool { return r.ID == 2 })
		}, kindLost},
		{"lost phone of an unknown that its retry acknowledged", func(f *fixture) {
			f.obs.Rows = slices.DeleteFunc(f.obs.Rows, func(r phoneState) bool { return r.ID == 3 })
		}, kindLost},
		{"refused create whose phone is stored", func(f *fixture) {
			p := f.creates[3].state(4)
			p.Type = "MOBILE"
			f.obs.Rows = append(f.obs.Rows, p)
		}, kindWrongAnswer},
		{"phantom row of an unknown resolved as none", func(f *fixture) {
			f.obs.Rows = append(f.obs.Rows, f.creates[5].state(5))
		}, kindPhantom},
		{"second row for a refused duplicate", func(f *fixture) {
			f.obs.Rows = append(f.obs.Rows, f.creates[2].state(6))
		}, kindPhantom},
		{"row sent by no request", func(f *fixture) {
			f.obs.Rows = append(f.obs.Rows, phoneState{ID: 9, Tenant: "TN-a", AccountID: 1, Number: "123", Type: "MOBILE", Active: true, CountryCode: "55"})
		}, kindPhantom},
		{"event without a phone", func(f *fixture) {
			orphan := f.creates[0].state(99)
			f.obs.Deliveries = append(f.obs.Deliveries, delivery{Source: "events.jsonl", EventID: "e99", Type: api.EventPhoneCreation, Object: orphan})
		}, kindEventOrphan},
		{"wrong-tenant row", func(f *fixture) {
			f.row(2).Tenant = "TN-a"
		}, kindTenant},
		{"event of another tenant", func(f *fixture) {
			f.delivery("e2").Object.Tenant = "TN-a"
		}, kindTenant},
		{"phone listed to another tenant", func(f *fixture) {
			f.obs.Listings[0].Phones = append(f.obs.Listings[0].Phones, *f.row(2))
		}, kindTenant},
		{"missing creation event", func(f *fixture) {
			f.obs.Deliveries = slices.DeleteFunc(f.obs.Deliveries, func(d delivery) bool { return d.EventID == "e3" })
		}, kindEventMissing},
		{"missing change event of an acknowledged update", func(f *fixture) {
			f.obs.Deliveries = slices.DeleteFunc(f.obs.Deliveries, func(d delivery) bool { return d.EventID == "e4" })
		}, kindEventMissing},
		{"acknowledged fields stored otherwise", func(f *fixture) {
			f.row(2).Number = "900003"
		}, kindMismatch},
		{"acknowledged update not stored", func(f *fixture) {
			*f.row(1) = f.creates[0].state(1)
		}, kindMismatch},
		{"refused update applied", func(f *fixture) {
			changed := f.updates[1].Patch.apply(*f.row(2))
			f.obs.Deliveries = append(f.obs.Deliveries, delivery{Source: "events.jsonl", EventID: "e5", Type: api.EventPhoneChange, Object: changed})
			f.obs.Outbox["e5"] = 5
		}, kindPhantom},
		{"two creation events for one phone", func(f *fixture) {
			f.obs.Deliveries = append(f.obs.Deliveries, delivery{Source: "events.jsonl", EventID: "e5", Type: api.EventPhoneCreation, Object: f.creates[0].state(1)})
			f.obs.Outbox["e5"] = 5
		}, kindEventTwice},
		{"second copy in one events file", func(f *fixture) {
			f.obs.Deliveries = append(f.obs.Deliveries, *f.delivery("e2"))
		}, kindEventTwice},
		{"second copy in the stream", func(f *fixture) {
			for i := range f.obs.Deliveries {
				f.obs.Deliveries[i].Source = "stream"
			}
			f.obs.Deliveries = append(f.obs.Deliveries, *f.delivery("e2"))
		}, kindEventTwice},
		{"409 for a number no other request sent", func(f *fixture) {
			e := f.creates[4]
			e.NoKey, e.Key, e.attempt, e.Retry = true, "", attempt{Status: 409, Class: classFailed, Message: httpapi.Message(phone.ErrDuplicate)}, nil
		}, kindWrongAnswer},
		{"4xx whose phone is stored", func(f *fixture) {
			e := f.creates[4]
			e.NoKey, e.Key, e.attempt, e.Retry = true, "", attempt{Status: 400, Class: classFailed}, nil
		}, kindWrongAnswer},
		{"unknown without a key, stored twice", func(f *fixture) {
			e := f.creates[4]
			e.NoKey, e.Key, e.Retry = true, "", nil
			twice := e.state(7)
			f.obs.Rows = append(f.obs.Rows, twice)
		}, kindPhantom},
		{"unknown forbidden create without a key, stored", func(f *fixture) {
			e := f.creates[5]
			e.Intent, e.TokenAccount, e.NoKey, e.Key, e.Retry = intentForbidden, 2, true, "", nil
			e.Draft.Type = "MOBILE"
			f.obs.Rows = append(f.obs.Rows, e.state(5))
		}, kindPhantom},
		{"event object differs from the phone", func(f *fixture) {
			f.delivery("e2").Object.Number = "900009"
		}, kindEventFields},
		{"events out of outbox order", func(f *fixture) {
			f.obs.Outbox["e2"], f.obs.Outbox["e3"] = 3, 2
		}, kindEventOrder},
		{"a phone's change event before its creation, as the outbox ranks them", func(f *fixture) {
			d := f.obs.Deliveries
			f.obs.Deliveries = append([]delivery{d[3]}, d[:3]...)
			f.obs.Outbox = map[string]int64{"e4": 1, "e1": 2, "e2": 3, "e3": 4}
		}, kindAccountOrder},
		{"an account's phones created out of id order, as the outbox ranks them", func(f *fixture) {
			later := f.creates[0].state(1)
			later.ID, later.Number = 9, "900009"
			f.obs.Deliveries = append([]delivery{{Source: "events.jsonl", EventID: "e9", Type: "phone_creation-1", Object: later}}, f.obs.Deliveries...)
			f.obs.Outbox["e9"] = 0
		}, kindAccountOrder},
		{"unreadable event line", func(f *fixture) {
			f.obs.Unreadable = append(f.obs.Unreadable, "events.jsonl line 5: unexpected end of JSON input")
		}, kindEventUnreadable},
		{"list misses a stored phone", func(f *fixture) {
			for i, l := range f.obs.Listings {
				if l.Tenant == "TN-b" && l.Account == 2 {
					f.obs.Listings[i].Phones = nil
				}
			}
		}, kindList},
		{"account token on another account answered 400, not 403", func(f *fixture) {
			e := f.creates[3]
			e.Intent, e.TokenAccount = intentForbidden, 2
		}, kindStatus},
		{"create answered off the contract", func(f *fixture) {
			f.creates[1].Contract = `decode response: decode application/json: invalid: id (field required)`
		}, kindContract},
		{"retry of an update answered off the contract", func(f *fixture) {
			f.updates[1].Retry = &attempt{Status: 502, Class: classUnknown, Contract: "unexpected status code: 502"}
		}, kindContract},
		{"unknown whose retry got no answer", func(f *fixture) {
			f.creates[5].Retry = &attempt{Err: "connection refused", Class: classUnknown, Tries: retryTries}
		}, kindUnresolved},
		{"unknown whose retry got the key's in-progress 409", func(f *fixture) {
			f.creates[5].Intent = intentCreate
			f.creates[5].Retry = &attempt{Status: 409, Class: classFailed, Message: httpapi.Message(phone.ErrKeyInProgress)}
		}, kindUnresolved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			tt.change(f)
			_, vs := verify(f.creates, f.updates, f.obs)
			if !slices.Contains(kinds(vs), tt.want) {
				t.Fatalf("violation kinds %v; want %s among them\n%v", kinds(vs), tt.want, vs)
			}
		})
	}
}

func TestVerifyCountsCopiesAcrossReplicasFiles(t *testing.T) {
	f := newFixture()
	for _, id := range []string{"e1", "e4"} {
		d := *f.delivery(id)
		d.Source = "replica-2/events.jsonl"
		f.obs.Deliveries = append(f.obs.Deliveries, d)
	}
	tl, vs := verify(f.creates, f.updates, f.obs)
	if len(vs) != 0 {
		t.Fatalf("violations %v; want none: a replica taking the lease over delivers what the previous holder had not marked", vs)
	}
	if tl.Duplicates != 2 || tl.Events != 4 || tl.Deliveries != 6 {
		t.Errorf("duplicates %d, events %d, deliveries %d; want 2, 4, 6", tl.Duplicates, tl.Events, tl.Deliveries)
	}
}

// TestVerifyResolvesUnknownsWithoutAKeyByTheDatabase: an unknown create
// without a key is not retried; its phone in the database, or its absence,
// is its fate.
func TestVerifyResolvesUnknownsWithoutAKeyByTheDatabase(t *testing.T) {
	for _, stored := range []bool{true, false} {
		t.Run(fmt.Sprint("stored=", stored), func(t *testing.T) {
			f := newFixture()
			e := f.creates[4] // unknown, id 3 if stored
			e.NoKey, e.Key, e.Retry = true, "", nil
			if !stored {
				f.obs.Rows = slices.DeleteFunc(f.obs.Rows, func(r phoneState) bool { return r.ID == 3 })
				f.obs.Deliveries = slices.DeleteFunc(f.obs.Deliveries, func(d delivery) bool { return d.EventID == "e3" })
				for i := range f.obs.Listings {
					f.obs.Listings[i].Phones = slices.DeleteFunc(f.obs.Listings[i].Phones, func(p phoneState) bool { return p.ID == 3 })
				}
			}
			tl, vs := verify(f.creates, f.updates, f.obs)
			if len(vs) != 0 {
				t.Fatalf("violations %v; want none", vs)
			}
			if tl.NoKey != 1 || (tl.UnknownCreated == 1) != stored || (tl.UnknownNone == 2) != !stored {
				t.Errorf("tally %+v; want one create without a key, created %v", tl, stored)
			}
			if want := map[bool]int64{true: 3, false: 0}[stored]; e.FoundID != want {
				t.Errorf("FoundID %d; want %d", e.FoundID, want)
			}
		})
	}
}

func TestVerifyAcceptsEitherFateOfAnUnresolvedUpdate(t *testing.T) {
	for _, appliedBeforeTheCrash := range []bool{false, true} {
		t.Run(fmt.Sprint("applied=", appliedBeforeTheCrash), func(t *testing.T) {
			f := newFixture()
			u := &updateEntry{Seq: 9, PhoneID: 3, Tenant: "TN-b", Account: 1, IfMatch: 1, Patch: patch{Extension: "u000000009"},
				attempt: attempt{Err: "EOF", Class: classUnknown}, Retry: &attempt{Err: "timeout", Class: classUnknown}}
			f.updates = append(f.updates, u)
			if appliedBeforeTheCrash {
				*f.row(3) = u.Patch.apply(*f.row(3))
				for i := range f.obs.Listings {
					for j := range f.obs.Listings[i].Phones {
						if f.obs.Listings[i].Phones[j].ID == 3 {
							f.obs.Listings[i].Phones[j] = *f.row(3)
						}
					}
				}
				f.obs.Deliveries = append(f.obs.Deliveries, delivery{Source: "events.jsonl", EventID: "e5", Type: api.EventPhoneChange, Object: *f.row(3)})
				f.obs.Outbox["e5"] = 5
			}
			_, vs := verify(f.creates, f.updates, f.obs)
			// The unresolved retry is itself a violation; nothing else is.
			if got := kinds(vs); !slices.Equal(got, []string{kindUnresolved}) {
				t.Fatalf("violation kinds %v; want only %s\n%v", got, kindUnresolved, vs)
			}
		})
	}
}

// The checker reads the events phonesd writes: the envelope of
// internal/phone, parsed back into the state the ledger predicts.
func TestParseEventReadsPhonesdsEnvelope(t *testing.T) {
	e := &createEntry{Tenant: "TN-a", Account: 12, CustomerID: ptr(int64(99)),
		Draft: draft{Number: "91234-5678", Type: "MOBILE", AreaCode: ptr(11), Extension: ptr("ext 9")}}
	want := e.state(42)
	ac := int32(11)
	p := phone.Phone{ID: 42, Tenant: "TN-a", AccountID: 12, CustomerID: ptr(int64(99)), Number: "91234-5678", Type: phone.Mobile,
		Active: true, AreaCode: &ac, CountryCode: 55, Extension: ptr("ext 9"), CreatedAt: time.Now(), UpdatedAt: time.Now(), Version: 1}
	ev, err := phone.CreatedEvent("0190a0b0-0000-7000-8000-000000000001", p, phone.Audit{CID: "cid"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseEvent("events.jsonl", ev.Payload)
	if err != nil {
		t.Fatalf("parseEvent: %v", err)
	}
	if d.EventID != ev.ID || d.Type != phone.EventCreated {
		t.Errorf("event %s of type %s; want %s of type %s", d.EventID, d.Type, ev.ID, phone.EventCreated)
	}
	if diff := want.diff(d.Object); len(diff) > 0 {
		t.Errorf("object: %s", strings.Join(diff, ", "))
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		status int
		err    error
		want   class
	}{
		{200, nil, classOK},
		{409, nil, classFailed},
		{429, nil, classFailed},
		{500, nil, classUnknown},
		{503, nil, classUnknown},
		{0, io.ErrUnexpectedEOF, classUnknown},
	}
	for _, tt := range tests {
		if got := classify(tt.status, tt.err); got != tt.want {
			t.Errorf("classify(%d, %v): got %s; want %s", tt.status, tt.err, got, tt.want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	env := map[string]string{postgresEnv: "postgres://h/db", natsEnv: "nats://h:4222"}
	o, err := parseOptions([]string{"--short"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 15*time.Second || o.kills != 3 || o.postgresURL != "postgres://h/db" || o.natsURL != "nats://h:4222" || !slices.Equal(o.backends, []string{"sqlite", "postgres"}) {
		t.Errorf("short defaults: %+v", o)
	}
	for _, bad := range [][]string{{"--scenario", "nope"}, {"--backend", "mysql"}, {"--duration", "1s"}, {"extra"}} {
		if _, err := parseOptions(bad, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("parseOptions(%q): got nil error; want one", bad)
		}
	}
}

func TestPlanSkipsWhatHasNoServer(t *testing.T) {
	c := &checker{opts: options{short: true, backends: []string{"sqlite", "postgres"}}}
	for _, p := range c.plan() {
		// A scenario that starts servers of its own needs only their
		// tools, which this machine may lack.
		ownPG, ownNATS := p.sc.privatePG, p.sc.privateNATS || p.sc.natsCluster > 0
		needsServer := (p.backend == "postgres" && !ownPG) || (p.sc.sink == "jetstream" && !ownNATS)
		if needsServer && p.skip == "" {
			t.Errorf("%s/%s: planned without a server; want skipped", p.sc.name, p.backend)
		}
		if !needsServer && p.skip != "" && !ownPG && !ownNATS {
			t.Errorf("%s/%s: skipped (%s); want planned", p.sc.name, p.backend, p.skip)
		}
	}
}

// TestVerifyLateEventsWithinTheAllowance moves an event behind one of
// higher outbox seq: counted as late within the scenario's allowance (a
// JetStream leader election's exception), a violation beyond it or
// without one.
func TestVerifyLateEventsWithinTheAllowance(t *testing.T) {
	for _, tt := range []struct {
		name       string
		lateWithin int64
		wantLate   int
		wantOrder  bool
	}{
		{"no allowance", 0, 0, true},
		{"within", 2, 1, false},
		{"beyond", 1, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			// e2 (seq 2) reaches the sink after e4 (seq 4).
			d := f.obs.Deliveries
			f.obs.Deliveries = []delivery{d[0], d[2], d[3], d[1]}
			f.obs.LateWithin = tt.lateWithin
			tl, vs := verify(f.creates, f.updates, f.obs)
			if got := slices.Contains(kinds(vs), kindEventOrder); got != tt.wantOrder || tl.Late != tt.wantLate {
				t.Errorf("late %d, event-order violation %v; want %d, %v\n%v", tl.Late, got, tt.wantLate, tt.wantOrder, vs)
			}
		})
	}
}
