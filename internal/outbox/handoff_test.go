package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/sqlite"
	"github.com/phonesd/phonesd/internal/testkit/eventtest"
)

// openHandingStore opens a store that hands the events it commits to
// committed.
func openHandingStore(t *testing.T, committed func([]phone.Event)) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "phones.db"), sqlite.Options{Committed: committed})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// createConcurrently creates n phones numbered from first, from 8
// goroutines, so that the store commits them in shared batches.
func createConcurrently(t *testing.T, svc *phone.Service, first, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Go(func() {
			for i := first + w; i < first+n; i += 8 {
				_, err := svc.Create(context.Background(), phone.CreateRequest{
					Phone: mobile(t, fmt.Sprintf("9100-%05d", i)),
					Audit: phone.Audit{CID: fmt.Sprintf("cid-%d", i)},
				})
				if err != nil {
					errs <- fmt.Errorf("create phone %d: %w", i, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// unreadableStore stops reading the outbox once closed is set: what the
// relay delivers afterwards can only have come through the handoff.
type unreadableStore struct {
	*sqlite.DB
	closed atomic.Bool
	reads  atomic.Int64
}

var errUnreadable = errors.New("outbox unreadable")

func (s *unreadableStore) PendingEvents(ctx context.Context, limit int) ([]phone.Event, error) {
	s.reads.Add(1)
	if s.closed.Load() {
		return nil, errUnreadable
	}
	return s.DB.PendingEvents(ctx, limit)
}

func (s *unreadableStore) EventsAfter(ctx context.Context, after int64, limit int) ([]phone.Event, error) {
	s.reads.Add(1)
	if s.closed.Load() {
		return nil, errUnreadable
	}
	return s.DB.EventsAfter(ctx, after, limit)
}

// TestRelayPublishesHandedOffEvents delivers events that the relay cannot
// read from the outbox: once it knows its position, the events the store
// hands over after their commits reach the file, in outbox order, once.
func TestRelayPublishesHandedOffEvents(t *testing.T) {
	handoff := outbox.NewHandoff()
	db := openHandingStore(t, handoff.Committed)
	store := &unreadableStore{DB: db}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	relay := outbox.NewRelay(store, openFileSink(t, path), outbox.Options{
		Handoff: handoff, PollInterval: time.Hour, MaxBackoff: 20 * time.Millisecond,
	})
	svc := phone.NewService(db, relay.Notify)
	startRelay(t, relay)

	// The first event is read: the relay knows no position yet.
	createConcurrently(t, svc, 0, 1)
	waitFor(t, "the first event delivered", func() bool { return len(eventtest.ReadFile(t, path)) == 1 })
	store.closed.Store(true)
	createConcurrently(t, svc, 1, 300)
	waitFor(t, "the handed-off events delivered", func() bool { return len(eventtest.ReadFile(t, path)) == 301 })
	store.closed.Store(false)
	checkLines(t, eventtest.ReadFile(t, path), allPayloads(t, db)[:301])
}

// TestRelayReadsWhatTheHandoffLacks loses every third handoff, as a
// transaction whose outcome was unknown or a handoff dropped while the
// relay lagged: the relay reads those events from the outbox, and every
// event reaches the file once, in outbox order.
func TestRelayReadsWhatTheHandoffLacks(t *testing.T) {
	handoff := outbox.NewHandoff()
	var calls atomic.Int64
	db := openHandingStore(t, func(events []phone.Event) {
		if calls.Add(1)%3 != 0 {
			handoff.Committed(events)
		}
	})
	store := &unreadableStore{DB: db}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	relay := outbox.NewRelay(store, openFileSink(t, path), outbox.Options{
		Handoff: handoff, BatchSize: 16, PollInterval: time.Hour, Gather: time.Millisecond,
	})
	svc := phone.NewService(db, relay.Notify)
	startRelay(t, relay)
	createConcurrently(t, svc, 0, 400)
	if err := relay.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() < 6 {
		t.Fatalf("the store handed off %d times; want enough to lose some", calls.Load())
	}
	if store.reads.Load() == 0 {
		t.Fatal("the relay never read the outbox; want it to read the lost handoffs")
	}
	checkLines(t, eventtest.ReadFile(t, path), allPayloads(t, db))
	if got := pendingCount(t, db); got != 0 {
		t.Errorf("pending after Flush: got %d; want 0", got)
	}
}

// TestRelayMarksEveryMarkEvery checks the position is marked once
// MarkEvery events wait for it, not every round, and by Flush.
func TestRelayMarksEveryMarkEvery(t *testing.T) {
	db := openStore(t)
	store := &countingMarks{DB: db}
	createPhones(t, db, 0, 25)
	relay := outbox.NewRelay(store, &flakySink{}, outbox.Options{BatchSize: 4, MarkEvery: 10, MarkInterval: time.Hour})
	startRelay(t, relay)
	// 25 events in rounds of 4: marks after 12 and 24, one event left.
	waitFor(t, "two marks", func() bool { return store.marks.Load() == 2 })
	waitFor(t, "all but one event marked", func() bool { return pendingCount(t, db) == 1 })
	if err := relay.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := pendingCount(t, db); got != 0 {
		t.Errorf("pending after Flush: got %d; want 0", got)
	}
	if got := store.marks.Load(); got != 3 {
		t.Errorf("marks: got %d; want 3", got)
	}
}

// TestRelayMarksAfterMarkInterval checks a position left behind by a
// quiet outbox is marked MarkInterval after its first event was published.
func TestRelayMarksAfterMarkInterval(t *testing.T) {
	db := openStore(t)
	createPhones(t, db, 0, 3)
	relay := outbox.NewRelay(db, &flakySink{}, outbox.Options{PollInterval: time.Hour, MarkInterval: 50 * time.Millisecond})
	startRelay(t, relay)
	waitFor(t, "the events marked", func() bool { return pendingCount(t, db) == 0 })
}

// countingMarks counts the marks that reach the store.
type countingMarks struct {
	*sqlite.DB
	marks atomic.Int64
}

func (s *countingMarks) MarkDelivered(ctx context.Context, through int64, epoch int64) error {
	s.marks.Add(1)
	return s.DB.MarkDelivered(ctx, through, epoch)
}

// TestFileSinkAfterCrashWithTheLargestUnmarkedWindow publishes what a
// relay may leave unmarked at most with the defaults, MarkEvery +
// BatchSize - 1 events, every mark failing; then, as after a crash, a new
// sink on the file and a new relay deliver from the store's mark: the file
// holds each event once.
func TestFileSinkAfterCrashWithTheLargestUnmarkedWindow(t *testing.T) {
	db := openStore(t)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sink := openFileSink(t, path)
	relay := outbox.NewRelay(&failingMarks{DB: db, failures: 1 << 30}, sink, outbox.Options{MarkInterval: time.Hour, MaxBackoff: 20 * time.Millisecond})
	flush := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := relay.Flush(ctx); err == nil {
			t.Fatal("Flush whose marks all fail: got nil; want an error")
		}
	}
	// MarkEvery - 1 events, published in rounds and left unmarked: not
	// yet due.
	createPhones(t, db, 0, outbox.DefaultMarkEvery-1)
	flush()
	// A full round more is published before the mark falls due, and
	// fails; nothing more is published after it.
	createPhones(t, db, outbox.DefaultMarkEvery-1, outbox.DefaultBatchSize+1)
	flush()
	const window = outbox.DefaultMarkEvery + outbox.DefaultBatchSize - 1
	if got := len(eventtest.ReadFile(t, path)); got != window {
		t.Fatalf("lines before the crash: got %d; want %d", got, window)
	}
	if got := pendingCount(t, db); got != window+1 {
		t.Fatalf("pending before the crash: got %d; want %d", got, window+1)
	}
	sink.Close()

	restarted := outbox.NewRelay(db, openFileSink(t, path), outbox.Options{})
	if err := restarted.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkLines(t, eventtest.ReadFile(t, path), allPayloads(t, db))
	if got := pendingCount(t, db); got != 0 {
		t.Errorf("pending after the restart: got %d; want 0", got)
	}
}
