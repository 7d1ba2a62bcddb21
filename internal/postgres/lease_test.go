package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/sink/file"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

func TestRelayLeaseOneHolderAtATime(t *testing.T) {
	dbURL := pgtest.Database(t)
	a, b := open(t, dbURL, Options{}), open(t, dbURL, Options{})
	ctx := context.Background()
	hold := func(name string, db *DB, want bool) outbox.Term {
		t.Helper()
		term, got, err := db.RelayLease().Hold(ctx)
		if err != nil || got != want {
			t.Fatalf("%s Hold() = %v, %v; want %v", name, got, err, want)
		}
		return term
	}
	first := hold("a", a, true)
	hold("b", b, false)
	if again := hold("a again", a, true); again.Epoch != first.Epoch {
		t.Errorf("a's epoch went from %d to %d while it held the lease; want it kept", first.Epoch, again.Epoch)
	}
	hold("b again", b, false)
	a.RelayLease().Close() // as when a replica dies: its session ends
	select {
	case <-first.Lost:
	default:
		t.Error("a's term is not lost after a released the lease")
	}
	second := waitHold(t, b)
	if second.Epoch <= first.Epoch {
		t.Errorf("b took over with epoch %d after a's %d; want a greater one", second.Epoch, first.Epoch)
	}
	hold("a after b took it", a, false)
}

// waitHold waits until db takes the lease: the server frees a released
// lock once it has noticed the session ended.
func waitHold(t *testing.T, db *DB) outbox.Term {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		term, got, err := db.RelayLease().Hold(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got {
			return term
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease was not taken within 5s of its release")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminateLeaseHolder ends the session holding the relay lease from the
// server's side, as a network failure or an administrator would.
func terminateLeaseHolder(t *testing.T, dbURL string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (classid::bigint << 32 | objid::bigint) = $1`, relayLeaseKey).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminate the lease's session: %d sessions, %v; want 1", n, err)
	}
}

// TestRelayLeaseKeptWhenTheCallerGivesUp: a relay stopped in the middle of
// Hold (a shutdown) still holds the lease at its next Hold (the shutdown's
// flush). Had the abandoned check closed the session, the server would
// free the lock only later, and the flush would find it taken and leave the
// events in the outbox.
func TestRelayLeaseKeptWhenTheCallerGivesUp(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	l := open(t, pgtest.Database(t), Options{}).RelayLease()
	first, held, err := l.Hold(context.Background())
	if err != nil || !held {
		t.Fatalf("Hold() = %v, %v; want the lease", held, err)
	}
	for i := range 5 {
		if term, held, err := l.Hold(ended); err != nil || !held || term.Epoch != first.Epoch {
			t.Fatalf("Hold %d with its ctx ended: %v, %v, epoch %d; want the lease kept in epoch %d", i, held, err, term.Epoch, first.Epoch)
		}
	}
	if term, held, err := l.Hold(context.Background()); err != nil || !held || term.Epoch != first.Epoch {
		t.Fatalf("Hold after callers gave up: %v, %v, epoch %d; want the lease kept in epoch %d", held, err, term.Epoch, first.Epoch)
	}
	select {
	case <-first.Lost:
		t.Error("the term is lost; want it kept")
	default:
	}

	// A take-over finishes too: the lock taken, its term begun.
	other := open(t, pgtest.Database(t), Options{}).RelayLease()
	if _, held, err := other.Hold(ended); err != nil || !held {
		t.Errorf("Hold of a free lease with its ctx ended: %v, %v; want the lease", held, err)
	}
}

func TestRelayLeaseLostAtOnceWhenItsSessionEnds(t *testing.T) {
	dbURL := pgtest.Database(t)
	a := open(t, dbURL, Options{})
	term, held, err := a.RelayLease().Hold(context.Background())
	if err != nil || !held {
		t.Fatalf("Hold() = %v, %v; want the lease", held, err)
	}
	terminateLeaseHolder(t, dbURL)
	select {
	case <-term.Lost:
	case <-time.After(leaseProbeInterval + leaseCheckTimeout):
		t.Fatal("the term is not lost after its session was ended")
	}
}

func TestMarkDeliveredRefusesAStaleEpoch(t *testing.T) {
	dbURL := pgtest.Database(t)
	a, b := open(t, dbURL, Options{}), open(t, dbURL, Options{})
	ctx := context.Background()
	createPhones(t, a, 3)
	events, err := a.PendingEvents(ctx, 10)
	if err != nil || len(events) != 3 {
		t.Fatalf("PendingEvents: %d, %v; want 3", len(events), err)
	}
	old := waitHold(t, a)
	if err := a.MarkDelivered(ctx, events[0].Seq, old.Epoch); err != nil {
		t.Fatalf("MarkDelivered with the current epoch: %v", err)
	}
	terminateLeaseHolder(t, dbURL) // a does not know yet when b takes over
	current := waitHold(t, b)
	err = a.MarkDelivered(ctx, events[2].Seq, old.Epoch)
	if !errors.Is(err, outbox.ErrLeaseLost) {
		t.Errorf("MarkDelivered with epoch %d after b took over with %d: got %v; want ErrLeaseLost", old.Epoch, current.Epoch, err)
	}
	pending, err := a.PendingEvents(ctx, 10)
	if err != nil || len(pending) != 2 || pending[0].Seq != events[1].Seq {
		t.Errorf("pending after the stale mark: %v, %v; want seqs %d and %d", pending, err, events[1].Seq, events[2].Seq)
	}
	if err := b.MarkDelivered(ctx, events[1].Seq, current.Epoch); err != nil {
		t.Errorf("MarkDelivered with the new epoch: %v", err)
	}
	pending, err = a.PendingEvents(ctx, 10)
	if err != nil || len(pending) != 1 || pending[0].Seq != events[2].Seq {
		t.Errorf("pending after the new holder's mark: %v, %v; want only seq %d", pending, err, events[2].Seq)
	}
}

// createPhones creates n phones of one account through the service, and
// returns once their events can be read.
func createPhones(t *testing.T, db *DB, n int) {
	t.Helper()
	svc := phone.NewService(db, nil)
	for i := range n {
		number, typ := fmt.Sprintf("9000-%04d", i), string(phone.Mobile)
		p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: &number, Type: &typ})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Create(context.Background(), phone.CreateRequest{Phone: p}); err != nil {
			t.Fatalf("create phone %d: %v", i, err)
		}
	}
	if err := db.SettleOutbox(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// pausedSink holds its first Publish until the round's context ends, then
// passes it on: a relay caught in the middle of a round.
type pausedSink struct {
	outbox.Sink
	once    sync.Once
	entered chan struct{}
	cause   chan error
}

func (s *pausedSink) Publish(ctx context.Context, events []phone.Event) error {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		select {
		case <-ctx.Done():
			s.cause <- context.Cause(ctx)
		case <-time.After(10 * time.Second):
			s.cause <- errors.New("the round went on for 10s after its lease was lost")
		}
	}
	return s.Sink.Publish(ctx, events)
}

// TestTakeOverMidRoundDeliversEachEventOnce runs two replicas' relays, each
// with its own events file: the first is caught in the middle of a round
// when its lease's session is ended, and the second takes over. The first
// must stop before writing anything, and the two files together must hold
// every event once, in outbox order.
func TestTakeOverMidRoundDeliversEachEventOnce(t *testing.T) {
	dbURL := pgtest.Database(t)
	a, b := open(t, dbURL, Options{}), open(t, dbURL, Options{})
	createPhones(t, a, 50)
	want, err := a.PendingEvents(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fileSink := func(name string) outbox.Sink {
		s, err := file.NewSink(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	paused := &pausedSink{Sink: fileSink("a.jsonl"), entered: make(chan struct{}), cause: make(chan error, 1)}
	// a polls slowly after losing the lease, so that b, polling fast, is
	// the one that takes over.
	relayA := outbox.NewRelay(a, paused, outbox.Options{Lease: a.RelayLease(), BatchSize: 20, PollInterval: 2 * time.Second})
	relayB := outbox.NewRelay(b, fileSink("b.jsonl"), outbox.Options{Lease: b.RelayLease(), BatchSize: 20, PollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { relayA.Run(ctx) })
	select {
	case <-paused.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("a's relay did not start a round")
	}
	wg.Go(func() { relayB.Run(ctx) })
	terminateLeaseHolder(t, dbURL)
	if cause := <-paused.cause; !errors.Is(cause, outbox.ErrLeaseLost) {
		t.Fatalf("a's round ended with %v; want ErrLeaseLost", cause)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending, err := b.PendingEvents(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("events still pending 10s after the take-over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	inA, inB := eventIDs(t, filepath.Join(dir, "a.jsonl")), eventIDs(t, filepath.Join(dir, "b.jsonl"))
	if len(inA) != 0 {
		t.Errorf("a wrote %d events after losing its lease mid-round; want none", len(inA))
	}
	if len(inB) != len(want) {
		t.Fatalf("b's file holds %d events; want each of the %d once", len(inB), len(want))
	}
	for i, ev := range want {
		if inB[i] != ev.ID {
			t.Fatalf("b's line %d is event %s; want %s, in outbox order", i+1, inB[i], ev.ID)
		}
	}
}

// eventIDs returns the event_id of each line of an events file.
func eventIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		_, rest, _ := strings.Cut(sc.Text(), `"event_id":"`)
		id, _, _ := strings.Cut(rest, `"`)
		ids = append(ids, id)
	}
	return ids
}

// TestOrderLocks finds the account locks a transaction holds in pg_locks
// by the ids OrderLocks gives.
func TestOrderLocks(t *testing.T) {
	ctx := context.Background()
	db := open(t, pgtest.Database(t), Options{})
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	keys := accountLocks([]account{{"tenant-a", 1}, {"tenant-a", 2}, {"tenant-a", 1}})
	if len(keys) != 2 {
		t.Fatalf("accountLocks of two accounts, one twice: got %d keys; want 2", len(keys))
	}
	if _, err := tx.Exec(ctx, lockAccountsSQL, accountLockClass, keys); err != nil {
		t.Fatal(err)
	}
	class, _, _ := OrderLocks()
	var held int
	err = db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid::bigint = $1 AND objsubid = 2 AND granted`, class).Scan(&held)
	if err != nil || held != 2 {
		t.Errorf("pg_locks rows for the account locks: %d, %v; want 2", held, err)
	}
}
