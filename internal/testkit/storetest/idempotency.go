package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/groupcommit"
	"github.com/phonesd/phonesd/internal/phone"
)

// keyed returns c with an idempotency key of scope.
func keyed(c phone.Creation, scope string, fingerprint string, expires time.Time) phone.Creation {
	c.Idempotency = &phone.Idempotency{Scope: scope, Fingerprint: []byte(fingerprint), ExpiresAt: expires}
	return c
}

func testBatchOutcomes(t *testing.T, s Store) {
	ctx := context.Background()
	inactive := draft()
	inactive.Active = ptr(false)
	other := draft()
	other.Number = ptr("11 98888-0000")
	batch := []phone.Creation{
		creation(t, tenant, account, nil, draft()),
		creation(t, tenant, account, nil, draft()), // duplicates the first, in the same batch
		creation(t, tenant, account, nil, inactive),
		creation(t, tenant, account, nil, inactive), // inactive phones never conflict
		creation(t, tenant, account, nil, other),
		creation(t, tenant, account, nil, draft()), // a trailing duplicate spends its id too
	}
	outs, err := s.CreatePhones(ctx, batch)
	if err != nil {
		t.Fatalf("CreatePhones: %v", err)
	}
	wantDup := []bool{false, true, false, false, false, true}
	var lastID int64
	for i, o := range outs {
		if got := errors.Is(o.Err, phone.ErrDuplicate); got != wantDup[i] {
			t.Fatalf("creation %d: err %v; want duplicate %v", i, o.Err, wantDup[i])
		}
		if o.Err == nil {
			if o.Phone.ID <= lastID {
				t.Errorf("creation %d: id %d after %d; want ids in batch order", i, o.Phone.ID, lastID)
			}
			lastID = o.Phone.ID
		}
	}
	if got := pending(t, s); len(got) != 4 {
		t.Errorf("%d events; want one per stored phone, 4", len(got))
	}
	next := create(t, s, creation(t, tenant, account+1, nil, draft()))
	if next.ID <= lastID+1 {
		t.Errorf("next id %d; want it past every id of the batch, %d and the trailing duplicate's", next.ID, lastID)
	}
}

// testRefusedBatch checks that a batch the database refuses before its
// commit (two creations with one event id, which only a bug could send)
// stores nothing and says so, so that group commit may retry its creates one
// by one: the retry must not meet the batch's own rows.
func testRefusedBatch(t *testing.T, s Store) {
	ctx := context.Background()
	other := draft()
	other.Number = ptr("11 98888-0000")
	first, second := creation(t, tenant, account, nil, draft()), creation(t, tenant, account, nil, other)
	second.EventID = first.EventID
	_, err := s.CreatePhones(ctx, []phone.Creation{first, second})
	if err == nil || !groupcommit.IsNotCommitted(err) {
		t.Fatalf("CreatePhones with a reused event id: got %v; want an error marked as not committed", err)
	}
	if got := pending(t, s); len(got) != 0 {
		t.Errorf("%d events after the refused batch; want none", len(got))
	}
	if _, err := s.CreatePhone(ctx, first); err != nil {
		t.Errorf("the first create alone after the refused batch: got %v; want it stored", err)
	}
}

// testLargeBatch stores a batch larger and odder than any one statement of
// a store takes, with duplicates and idempotency keys whose first use is
// far from their second, so that they fall in different statements.
func testLargeBatch(t *testing.T, s Store) {
	ctx := context.Background()
	const size = 203
	expires := time.Now().Add(time.Hour)
	batch := make([]phone.Creation, size)
	wantDup := make([]bool, size)
	wantTaken := make([]bool, size)
	for i := range batch {
		n := i
		if i%50 == 49 {
			n = i - 45 // duplicates a phone of an earlier statement
			wantDup[i] = true
		}
		batch[i] = creation(t, tenant, account, nil, numbered(n))
		switch {
		case i%60 == 7:
			batch[i] = keyed(batch[i], fmt.Sprintf("large-%d", i), "f", expires)
		case i%60 == 59:
			batch[i] = keyed(batch[i], fmt.Sprintf("large-%d", i-52), "f", expires) // the key of an earlier create
			wantTaken[i], wantDup[i] = true, false
		}
	}
	outs, err := s.CreatePhones(ctx, batch)
	if err != nil {
		t.Fatalf("CreatePhones: %v", err)
	}
	stored := 0
	for i, o := range outs {
		dup, taken := errors.Is(o.Err, phone.ErrDuplicate), errors.Is(o.Err, phone.ErrKeyTaken)
		if dup != wantDup[i] || taken != wantTaken[i] || (o.Err != nil && !dup && !taken) {
			t.Fatalf("creation %d: err %v; want duplicate %v, key taken %v", i, o.Err, wantDup[i], wantTaken[i])
		}
		if o.Err == nil {
			stored++
			if want := batch[i].Phone.Phone().Number; o.Phone.Number != want {
				t.Errorf("creation %d: stored number %q; want %q", i, o.Phone.Number, want)
			}
		}
	}
	if got := len(pending(t, s)); got != stored {
		t.Errorf("%d events; want one per stored phone, %d", got, stored)
	}
	list := listPhones(t, s, phone.ListQuery{Tenant: tenant, AccountID: account, Limit: 500})
	if len(list) != stored {
		t.Errorf("%d phones listed; want %d", len(list), stored)
	}
}

func testIdempotencyKeys(t *testing.T, s Store) {
	ctx := context.Background()
	expires := time.Now().Add(time.Hour)
	first, err := s.CreatePhone(ctx, keyed(creation(t, tenant, account, nil, draft()), "scope-1", "fp-1", expires))
	if err != nil {
		t.Fatalf("create with a key: %v", err)
	}
	rep, ok, err := s.Replay(ctx, "scope-1", time.Now())
	if err != nil || !ok || rep.PhoneID != first.ID || !rep.Created || string(rep.Fingerprint) != "fp-1" {
		t.Fatalf("Replay = %+v, %v, %v; want phone %d created with fp-1", rep, ok, err, first.ID)
	}

	other := draft()
	other.Number = ptr("11 97777-0000")
	_, err = s.CreatePhone(ctx, keyed(creation(t, tenant, account, nil, other), "scope-1", "fp-2", expires))
	if !errors.Is(err, phone.ErrKeyTaken) {
		t.Fatalf("second create with the key: %v; want ErrKeyTaken", err)
	}
	if rep2, _, _ := s.Replay(ctx, "scope-1", time.Now()); rep2.PhoneID != first.ID || string(rep2.Fingerprint) != "fp-1" {
		t.Errorf("the taken key changed: %+v", rep2)
	}

	// A duplicate's key is kept, with the answer it got.
	_, err = s.CreatePhone(ctx, keyed(creation(t, tenant, account, nil, draft()), "scope-dup", "fp-3", expires))
	if !errors.Is(err, phone.ErrDuplicate) {
		t.Fatalf("duplicate with a key: %v; want ErrDuplicate", err)
	}
	rep, ok, err = s.Replay(ctx, "scope-dup", time.Now())
	if err != nil || !ok || rep.Created {
		t.Fatalf("Replay of the duplicate's key = %+v, %v, %v; want kept, not created", rep, ok, err)
	}
	// Later phones never take the duplicate's id.
	for i := range 3 {
		d := draft()
		d.Number = ptr("21 9000-000" + string(rune('0'+i)))
		create(t, s, creation(t, tenant, account, nil, d))
	}
	if rep, _, _ := s.Replay(ctx, "scope-dup", time.Now()); rep.Created {
		t.Errorf("a later phone took the id %d of the duplicate's key", rep.PhoneID)
	}
	if _, ok, _ := s.Replay(ctx, "scope-unknown", time.Now()); ok {
		t.Errorf("Replay of an unknown scope found a key")
	}
	if got := pending(t, s); len(got) != 4 {
		t.Errorf("%d events; want 4 (none for the refused creates)", len(got))
	}
}

func testIdempotencyKeyExpiry(t *testing.T, s Store) {
	ctx := context.Background()
	soon := time.Now().Add(50 * time.Millisecond)
	create(t, s, keyed(creation(t, tenant, account, nil, draft()), "scope-x", "fp-1", soon))
	if _, ok, _ := s.Replay(ctx, "scope-x", soon.Add(time.Millisecond)); ok {
		t.Errorf("Replay found a key past its expiry")
	}
	time.Sleep(time.Until(soon) + 10*time.Millisecond)
	other := draft()
	other.Number = ptr("11 96666-0000")
	p, err := s.CreatePhone(ctx, keyed(creation(t, tenant, account, nil, other), "scope-x", "fp-2", time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatalf("create with an expired key: %v; want the key taken anew", err)
	}
	if rep, ok, _ := s.Replay(ctx, "scope-x", time.Now()); !ok || rep.PhoneID != p.ID || string(rep.Fingerprint) != "fp-2" {
		t.Errorf("Replay = %+v, %v; want the new create's", rep, ok)
	}
	create(t, s, keyed(creation(t, "tenant-b", account, nil, draft()), "scope-old", "fp", time.Now().Add(-time.Second)))
	n, err := s.PurgeKeys(ctx, time.Now())
	if err != nil || n != 1 {
		t.Fatalf("PurgeKeys = %d, %v; want 1 expired key deleted", n, err)
	}
	if _, ok, _ := s.Replay(ctx, "scope-x", time.Now()); !ok {
		t.Errorf("PurgeKeys deleted a live key")
	}
}
