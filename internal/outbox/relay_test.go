package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/sink/file"
	"github.com/phonesd/phonesd/internal/sqlite"
	"github.com/phonesd/phonesd/internal/testkit/eventtest"
)

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	return openHandingStore(t, nil)
}

func openFileSink(t *testing.T, path string) *file.Sink {
	t.Helper()
	sink, err := file.NewSink(path)
	if err != nil {
		t.Fatalf("file.NewSink: %v", err)
	}
	t.Cleanup(func() { sink.Close() })
	return sink
}

// createPhones creates n distinct phones through the service, numbered from
// first.
func createPhones(t *testing.T, db *sqlite.DB, first, n int) {
	t.Helper()
	svc := phone.NewService(db, nil)
	for i := first; i < first+n; i++ {
		_, err := svc.Create(context.Background(), phone.CreateRequest{
			Phone: mobile(t, fmt.Sprintf("9000-%04d", i)),
			Audit: phone.Audit{CID: fmt.Sprintf("cid-%d", i)},
		})
		if err != nil {
			t.Fatalf("create phone %d: %v", i, err)
		}
	}
}

// mobile is a new mobile phone of account 1 of tenant-a.
func mobile(t *testing.T, number string) phone.Candidate {
	t.Helper()
	typ := string(phone.Mobile)
	p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: &number, Type: &typ})
	if err != nil {
		t.Fatalf("new phone %s: %v", number, err)
	}
	return p
}

// allPayloads returns the payloads of all events in the outbox, delivered
// or not, in outbox order.
func allPayloads(t *testing.T, db *sqlite.DB) []string {
	t.Helper()
	events, err := db.EventsAfter(context.Background(), 0, 100000)
	if err != nil {
		t.Fatalf("EventsAfter: %v", err)
	}
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = string(ev.Payload)
	}
	return out
}

func pendingCount(t *testing.T, db *sqlite.DB) int64 {
	t.Helper()
	n, _, err := db.OutboxStats(context.Background())
	if err != nil {
		t.Fatalf("OutboxStats: %v", err)
	}
	return n
}

// waitFor polls cond until it holds or the test has waited too long.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startRelay runs r until the test ends, and returns a function that stops it
// and waits for Run to return.
func startRelay(t *testing.T, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("Run did not return after its ctx ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("lines: got %d; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d:\ngot  %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestRelayDeliversToFile(t *testing.T) {
	db := openStore(t)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sink := openFileSink(t, path)

	// Events created before the relay starts, more than one batch of them.
	createPhones(t, db, 0, 70)
	relay := outbox.NewRelay(db, sink, outbox.Options{BatchSize: 16, PollInterval: time.Hour})
	want := allPayloads(t, db)
	stop := startRelay(t, relay)
	waitFor(t, "the backlog to be delivered", func() bool { return pendingCount(t, db) == 0 })

	// Events created while it runs: with an hour's poll interval only
	// Notify, which the service calls after each commit, can wake it.
	svc := phone.NewService(db, relay.Notify)
	var wantIDs []int64
	for i := 70; i < 100; i++ {
		p, err := svc.Create(context.Background(), phone.CreateRequest{
			Phone: mobile(t, fmt.Sprintf("9000-%04d", i)),
			Audit: phone.Audit{CID: fmt.Sprintf("cid-%d", i)},
		})
		if err != nil {
			t.Fatalf("create phone %d: %v", i, err)
		}
		wantIDs = append(wantIDs, p.ID)
		waitFor(t, fmt.Sprintf("event %d to be delivered", i), func() bool { return pendingCount(t, db) == 0 })
	}
	stop()

	lines := eventtest.ReadFile(t, path)
	if got, wantN := len(lines), len(want)+len(wantIDs); got != wantN {
		t.Fatalf("lines: got %d; want %d", got, wantN)
	}
	checkLines(t, lines[:len(want)], want)
	for i, line := range lines[len(want):] {
		var env struct {
			Data struct {
				Object struct {
					ID int64 `json:"id"`
				} `json:"object"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			t.Fatalf("line %d: %v", len(want)+i, err)
		}
		if env.Data.Object.ID != wantIDs[i] {
			t.Errorf("line %d: phone id: got %d; want %d", len(want)+i, env.Data.Object.ID, wantIDs[i])
		}
	}
}

// flakySink records what it is given and fails the first failFirst calls;
// a fake because a broker outage cannot be produced for real in a test.
type flakySink struct {
	mu        sync.Mutex
	failFirst int
	calls     []time.Time
	got       []phone.Event
}

var errUnavailable = errors.New("sink unavailable")

func (s *flakySink) Publish(_ context.Context, events []phone.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, time.Now())
	if len(s.calls) <= s.failFirst {
		return errUnavailable
	}
	s.got = append(s.got, events...)
	return nil
}

func (s *flakySink) Close() error { return nil }

func (s *flakySink) snapshot() (calls []time.Time, got []phone.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.calls...), append([]phone.Event(nil), s.got...)
}

// lockedBuffer is a log destination the test can read while the relay
// writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRelayBacksOffAndRecovers(t *testing.T) {
	const failures = 3
	db := openStore(t)
	createPhones(t, db, 0, 10)
	want := allPayloads(t, db)

	sink := &flakySink{failFirst: failures}
	var logs lockedBuffer
	relay := outbox.NewRelay(db, sink, outbox.Options{
		BatchSize:    4,
		PollInterval: 10 * time.Millisecond,
		MaxBackoff:   time.Second,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	start := time.Now()
	stop := startRelay(t, relay)

	waitFor(t, "delivery after the failures", func() bool { return pendingCount(t, db) == 0 })
	stop()

	calls, got := sink.snapshot()
	// Failures, then three batches of 4, 4 and 2, then nothing more.
	if len(calls) != failures+3 {
		t.Errorf("Publish calls: got %d; want %d", len(calls), failures+3)
	}
	// Waits of 100ms, 200ms and 400ms follow the three failures.
	wantWaits := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	for i, w := range wantWaits {
		if i+1 >= len(calls) {
			break
		}
		if gap := calls[i+1].Sub(calls[i]); gap < w*9/10 {
			t.Errorf("wait after failure %d: got %v; want about %v", i+1, gap, w)
		}
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("delivery took %v; want under 3s", elapsed)
	}

	gotPayloads := make([]string, len(got))
	for i, ev := range got {
		gotPayloads[i] = string(ev.Payload)
	}
	checkLines(t, gotPayloads, want)

	out := logs.String()
	if n := strings.Count(out, "outbox delivery failing"); n != 1 {
		t.Errorf("failure log lines: got %d; want 1 per streak\n%s", n, out)
	}
	if n := strings.Count(out, "outbox delivery recovered"); n != 1 {
		t.Errorf("recovery log lines: got %d; want 1\n%s", n, out)
	}
}

// TestRelayNoHotLoop checks that a sink that keeps failing is retried with
// growing waits however often Notify is called.
func TestRelayNoHotLoop(t *testing.T) {
	db := openStore(t)
	createPhones(t, db, 0, 1)
	sink := &flakySink{failFirst: 1 << 30}
	relay := outbox.NewRelay(db, sink, outbox.Options{PollInterval: time.Millisecond, MaxBackoff: time.Second})
	stop := startRelay(t, relay)

	end := time.Now().Add(650 * time.Millisecond)
	for time.Now().Before(end) {
		relay.Notify()
		time.Sleep(time.Millisecond)
	}
	stop()

	// Calls at about 0, 100ms, 300ms and 700ms: three in the window.
	calls, _ := sink.snapshot()
	if len(calls) < 2 || len(calls) > 4 {
		t.Errorf("Publish calls in 650ms: got %d; want 2 to 4", len(calls))
	}
	if got := pendingCount(t, db); got != 1 {
		t.Errorf("pending: got %d; want 1", got)
	}
}

func TestFlush(t *testing.T) {
	t.Run("drains", func(t *testing.T) {
		db := openStore(t)
		path := filepath.Join(t.TempDir(), "events.jsonl")
		sink := openFileSink(t, path)
		createPhones(t, db, 0, 25)
		want := allPayloads(t, db)

		relay := outbox.NewRelay(db, sink, outbox.Options{BatchSize: 10})
		if err := relay.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: got error %v; want nil", err)
		}
		if got := pendingCount(t, db); got != 0 {
			t.Errorf("pending after Flush: got %d; want 0", got)
		}
		checkLines(t, eventtest.ReadFile(t, path), want)
	})

	t.Run("empty outbox", func(t *testing.T) {
		db := openStore(t)
		sink := &flakySink{}
		relay := outbox.NewRelay(db, sink, outbox.Options{})
		if err := relay.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: got error %v; want nil", err)
		}
		if calls, _ := sink.snapshot(); len(calls) != 0 {
			t.Errorf("Publish calls: got %d; want 0", len(calls))
		}
	})

	t.Run("gives up when ctx ends", func(t *testing.T) {
		db := openStore(t)
		createPhones(t, db, 0, 3)
		relay := outbox.NewRelay(db, &flakySink{failFirst: 1 << 30}, outbox.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		err := relay.Flush(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errUnavailable) {
			t.Errorf("Flush: got error %v; want DeadlineExceeded and the sink's error", err)
		}
		if got := pendingCount(t, db); got != 3 {
			t.Errorf("pending: got %d; want 3 (left in the outbox)", got)
		}
	})

	t.Run("while Run delivers", func(t *testing.T) {
		db := openStore(t)
		sink := &flakySink{}
		createPhones(t, db, 0, 40)
		want := allPayloads(t, db)
		relay := outbox.NewRelay(db, sink, outbox.Options{BatchSize: 3, PollInterval: time.Millisecond})
		startRelay(t, relay)
		if err := relay.Flush(context.Background()); err != nil {
			t.Fatalf("Flush: got error %v; want nil", err)
		}
		_, got := sink.snapshot()
		gotPayloads := make([]string, len(got))
		for i, ev := range got {
			gotPayloads[i] = string(ev.Payload)
		}
		// One round at a time: neither duplicates nor reordering.
		checkLines(t, gotPayloads, want)
	})
}

// countingStore passes every call to the real store and adds up what
// PruneDelivered deleted.
type countingStore struct {
	*sqlite.DB
	mu     sync.Mutex
	pruned int64
}

func (s *countingStore) PruneDelivered(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.DB.PruneDelivered(ctx, before)
	s.mu.Lock()
	s.pruned += n
	s.mu.Unlock()
	return n, err
}

func (s *countingStore) total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pruned
}

func TestRelayPrunes(t *testing.T) {
	db := openStore(t)
	store := &countingStore{DB: db}
	createPhones(t, db, 0, 5)
	relay := outbox.NewRelay(store, &flakySink{}, outbox.Options{
		PollInterval:  5 * time.Millisecond,
		Retention:     time.Millisecond,
		PruneInterval: 20 * time.Millisecond,
	})
	startRelay(t, relay)
	waitFor(t, "sent events to be pruned", func() bool { return store.total() == 5 })
}

// heldElsewhere is a lease another replica holds: the standby's view,
// without a PostgreSQL server to share one. It counts the rounds that
// asked for it.
type heldElsewhere struct{ holds atomic.Int64 }

func (h *heldElsewhere) Hold(context.Context) (outbox.Term, bool, error) {
	h.holds.Add(1)
	return outbox.Term{}, false, nil
}

func TestRelayLogsBacklog(t *testing.T) {
	t.Run("delivering relay", func(t *testing.T) {
		db := openStore(t)
		createPhones(t, db, 0, 3)
		var logs lockedBuffer
		// The sink keeps failing, so the backlog stays and its age grows.
		relay := outbox.NewRelay(db, &flakySink{failFirst: 1 << 30}, outbox.Options{
			PollInterval:  5 * time.Millisecond,
			MaxBackoff:    10 * time.Millisecond,
			StatsInterval: 20 * time.Millisecond,
			Logger:        slog.New(slog.NewJSONHandler(&logs, nil)),
		})
		stop := startRelay(t, relay)
		waitFor(t, "two backlog lines", func() bool { return strings.Count(logs.String(), `"msg":"outbox backlog"`) >= 2 })
		stop()

		var line struct {
			Pending          int64   `json:"pending"`
			OldestAgeSeconds float64 `json:"oldest_age_seconds"`
		}
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, `"msg":"outbox backlog"`) {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
			}
		}
		if line.Pending != 3 {
			t.Errorf("pending in the last backlog line: got %d; want 3", line.Pending)
		}
		if line.OldestAgeSeconds <= 0 {
			t.Errorf("oldest_age_seconds in the last backlog line: got %v; want > 0", line.OldestAgeSeconds)
		}
	})

	t.Run("standby", func(t *testing.T) {
		db := openStore(t)
		createPhones(t, db, 0, 1)
		var logs lockedBuffer
		sink := &flakySink{}
		lease := &heldElsewhere{}
		relay := outbox.NewRelay(db, sink, outbox.Options{
			Lease:         lease,
			PollInterval:  5 * time.Millisecond,
			StatsInterval: time.Millisecond,
			Logger:        slog.New(slog.NewJSONHandler(&logs, nil)),
		})
		stop := startRelay(t, relay)
		// Many rounds, each past StatsInterval: a round that asked for the
		// lease has decided whether to log by the time the next one asks.
		waitFor(t, "ten standby rounds", func() bool { return lease.holds.Load() > 10 })
		stop()
		if strings.Contains(logs.String(), "outbox backlog") {
			t.Errorf("a standby logged the backlog:\n%s", logs.String())
		}
		if calls, _ := sink.snapshot(); len(calls) != 0 {
			t.Errorf("a standby published %d times; want 0", len(calls))
		}
	})
}
