package outbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/sqlite"
	"github.com/phonesd/phonesd/internal/testkit/eventtest"
)

// The relay and the file sink together deliver each event once: the sink
// recognises what the relay delivers again after a mark it could not make.

func TestRelayWritesEachEventOnceAfterAFailedMark(t *testing.T) {
	db := openStore(t)
	createPhones(t, db, 0, 5)
	want := allPayloads(t, db)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	store := &failingMarks{DB: db, failures: 2}
	relay := outbox.NewRelay(store, openFileSink(t, path), outbox.Options{PollInterval: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	startRelay(t, relay)
	waitFor(t, "every event marked sent", func() bool { return pendingCount(t, db) == 0 })
	checkLines(t, eventtest.ReadFile(t, path), want)
}

// failingMarks fails its first marks after they were made, as a mark whose
// answer is lost, or made by a process that dies before it returns.
type failingMarks struct {
	*sqlite.DB
	mu       sync.Mutex
	failures int
}

func (s *failingMarks) MarkDelivered(ctx context.Context, through int64, epoch int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return errors.New("mark lost")
	}
	return s.DB.MarkDelivered(ctx, through, epoch)
}

// TestRelayAfterCrashDoesNotAppendAgain starts a relay on a file that
// already holds the first events, delivered before a crash that came before
// they were marked sent: they are marked now, and only the others appended.
func TestRelayAfterCrashDoesNotAppendAgain(t *testing.T) {
	db := openStore(t)
	createPhones(t, db, 0, 6)
	want := allPayloads(t, db)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	torn := want[3][:len(want[3])/2]
	if err := os.WriteFile(path, []byte(strings.Join(want[:3], "\n")+"\n"+torn), 0o600); err != nil {
		t.Fatal(err)
	}
	relay := outbox.NewRelay(db, openFileSink(t, path), outbox.Options{PollInterval: 5 * time.Millisecond})
	startRelay(t, relay)
	waitFor(t, "every event marked sent", func() bool { return pendingCount(t, db) == 0 })
	checkLines(t, eventtest.ReadFile(t, path), want)
}
