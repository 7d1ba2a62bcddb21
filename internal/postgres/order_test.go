package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/migration"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// TestPendingWaitsForOlderTransactions holds a writing transaction open
// while another account's create commits: the create's event is withheld
// until the older transaction ends, and then comes after that
// transaction's event, in transaction id order, not in commit order.
func TestPendingWaitsForOlderTransactions(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	db := open(t, dbURL, Options{})
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The open transaction holds back every delivery on the server, other
	// tests' too: should this test stop midway, the server ends it soon.
	if _, err := conn.Exec(ctx, "SET idle_in_transaction_session_timeout = '2s'"); err != nil {
		t.Fatal(err)
	}
	older, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer older.Rollback(ctx)
	olderEvent := uuid.NewString()
	// An update takes its account's lock, then writes: its transaction id
	// is assigned at its first write.
	if _, err := older.Exec(ctx, lockAccountsSQL, accountLockClass, accountLocks([]account{{"tenant-a", 1}})); err != nil {
		t.Fatal(err)
	}
	if _, err := older.Exec(ctx, insertEventSQL, olderEvent, phone.EventDomain, phone.EventChanged, []byte(`{}`), "2026-01-01T00:00:00Z", nil); err != nil {
		t.Fatal(err)
	}

	p, err := phone.New("tenant-a", 2, nil, phone.Draft{Number: new("5550100"), Type: new("MOBILE")})
	if err != nil {
		t.Fatal(err)
	}
	later := phone.Creation{Phone: p, EventID: uuid.NewString()}
	if _, err := db.CreatePhone(ctx, later); err != nil {
		t.Fatal(err)
	}
	if got, err := db.PendingEvents(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("pending while an older transaction is open: %v, %v; want none", eventIDsOf(got), err)
	}
	if err := older.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.SettleOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := db.PendingEvents(ctx, 10)
	if want := []string{olderEvent, later.EventID}; err != nil || fmt.Sprint(eventIDsOf(got)) != fmt.Sprint(want) {
		t.Fatalf("pending once the older transaction committed: %v, %v; want %v (it committed last, but began writing first)", eventIDsOf(got), err, want)
	}
}

// TestAccountOrderAcrossReplicas has two replicas create and update the
// phones of a few accounts at once, and checks the outbox order the relay
// delivers in: per account, created ids increase, and each phone's events
// come in the order they were written (created, extension 1, extension
// 2), though different accounts' batches commit side by side.
func TestAccountOrderAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	replicas := []*DB{open(t, dbURL, Options{}), open(t, dbURL, Options{})}
	const accounts, perWorker, workers = 3, 15, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		svc := phone.NewService(replicas[w%len(replicas)], nil)
		wg.Go(func() {
			for i := range perWorker {
				account := int64(1 + (w+i)%accounts)
				p, err := phone.New("tenant-a", account, nil, phone.Draft{Number: new(fmt.Sprintf("555%02d%04d", w, i)), Type: new("MOBILE")})
				if err != nil {
					errs <- err
					return
				}
				created, err := svc.Create(ctx, phone.CreateRequest{Phone: p})
				if err != nil {
					errs <- fmt.Errorf("create: %w", err)
					return
				}
				for _, ext := range []string{"1", "2"} {
					patch, err := phone.Patch{Draft: phone.Draft{Extension: &ext}}.Validate()
					if err != nil {
						errs <- err
						return
					}
					if _, err := svc.Update(ctx, phone.UpdateRequest{Tenant: "tenant-a", AccountID: account, ID: created.ID,
						Patch: patch}); err != nil {
						errs <- fmt.Errorf("update: %w", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := replicas[0].SettleOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	events, err := replicas[0].PendingEvents(ctx, 10*workers*perWorker)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3*workers*perWorker {
		t.Fatalf("pending events: got %d; want %d", len(events), 3*workers*perWorker)
	}
	lastID := map[int64]int64{}
	history := map[int64]string{}
	for _, ev := range events {
		var env struct {
			Data struct {
				Object struct {
					ID        int64   `json:"id"`
					AccountID int64   `json:"account_id"`
					Extension *string `json:"extension"`
				} `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal(ev.Payload, &env); err != nil {
			t.Fatalf("event %s: %v", ev.ID, err)
		}
		obj := env.Data.Object
		ext := "-"
		if obj.Extension != nil {
			ext = *obj.Extension
		}
		history[obj.ID] += ext
		if ev.Type != phone.EventCreated {
			continue
		}
		if obj.ID <= lastID[obj.AccountID] {
			t.Errorf("account %d: phone %d created after phone %d in outbox order", obj.AccountID, obj.ID, lastID[obj.AccountID])
		}
		lastID[obj.AccountID] = obj.ID
	}
	for id, h := range history {
		if h != "-12" {
			t.Errorf("phone %d: extensions in outbox order %q; want %q (created, then 1, then 2)", id, h, "-12")
		}
	}
}

// TestMigrateOutboxToTransactionOrder migrates an outbox written by
// seq order, with a position, and checks that what was delivered stays
// delivered and what waited is delivered, in seq order, before anything
// written afterwards.
func TestMigrateOutboxToTransactionOrder(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	migrations, err := migration.Read(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var before []migration.Migration
	for _, m := range migrations {
		if m.Version < 5 {
			before = append(before, m)
		}
	}
	if err := applyMigrations(ctx, conn, before); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 5)
	for i := range ids {
		ids[i] = uuid.NewString()
		if _, err := conn.Exec(ctx, insertEventSQL, ids[i], phone.EventDomain, phone.EventCreated, []byte(`{}`), "2026-01-01T00:00:00Z", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `UPDATE relay_lease SET delivered_seq = (SELECT seq FROM outbox WHERE event_id = $1)`, ids[1]); err != nil {
		t.Fatal(err)
	}

	db := open(t, dbURL, Options{})
	p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: new("5550100"), Type: new("MOBILE")})
	if err != nil {
		t.Fatal(err)
	}
	after := phone.Creation{Phone: p, EventID: uuid.NewString()}
	if _, err := db.CreatePhone(ctx, after); err != nil {
		t.Fatal(err)
	}
	if err := db.SettleOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := db.PendingEvents(ctx, 10)
	if want := append(ids[2:], after.EventID); err != nil || fmt.Sprint(eventIDsOf(got)) != fmt.Sprint(want) {
		t.Errorf("pending after the migration: %v, %v; want %v", eventIDsOf(got), err, want)
	}
}

func eventIDsOf(events []phone.Event) []string {
	ids := make([]string, len(events))
	for i, ev := range events {
		ids[i] = ev.ID
	}
	return ids
}

// TestEventsAfter reads on from an event rather than from the position, in
// the outbox's order, and refuses to read after an event that is not in
// the outbox, which would otherwise look like an outbox with nothing more.
func TestEventsAfter(t *testing.T) {
	ctx := context.Background()
	db := open(t, pgtest.Database(t), Options{})
	createPhones(t, db, 3)
	all, err := db.EventsAfter(ctx, 0, 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("EventsAfter(0): %v, %v; want 3 events", eventIDsOf(all), err)
	}
	pending, err := db.PendingEvents(ctx, 10)
	if err != nil || fmt.Sprint(eventIDsOf(pending)) != fmt.Sprint(eventIDsOf(all)) {
		t.Fatalf("PendingEvents: %v, %v; want EventsAfter(0)'s %v", eventIDsOf(pending), err, eventIDsOf(all))
	}
	// Marked or not, what follows an event is the same.
	if err := db.MarkDelivered(ctx, all[1].Seq, 0); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		after int64
		want  []phone.Event
	}{{all[0].Seq, all[1:]}, {all[1].Seq, all[2:]}, {all[2].Seq, nil}} {
		got, err := db.EventsAfter(ctx, tt.after, 10)
		if err != nil || fmt.Sprint(eventIDsOf(got)) != fmt.Sprint(eventIDsOf(tt.want)) {
			t.Errorf("EventsAfter(%d): %v, %v; want %v", tt.after, eventIDsOf(got), err, eventIDsOf(tt.want))
		}
	}
	if got, err := db.EventsAfter(ctx, all[0].Seq, 1); err != nil || len(got) != 1 || got[0].ID != all[1].ID {
		t.Errorf("EventsAfter(%d, limit 1): %v, %v; want %s", all[0].Seq, eventIDsOf(got), err, all[1].ID)
	}
	if got, err := db.EventsAfter(ctx, all[2].Seq+1000, 10); err == nil {
		t.Errorf("EventsAfter of an event not in the outbox: %v, nil error; want an error", eventIDsOf(got))
	}
}
