package health_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/health"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/sqlite"
)

// TestProbe reads a real SQLite outbox: the backlog its creates left, the
// same answer again within MaxAge, and storage reported unreachable, the
// backlog unknown, once the database is closed.
func TestProbe(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "phones.db"), sqlite.Options{})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			db.Close()
		}
	})
	svc := phone.NewService(db, nil)
	const created = 3
	for i := range created {
		p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: new(fmt.Sprintf("9000-%04d", i)), Type: new("MOBILE")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Create(ctx, phone.CreateRequest{Phone: p}); err != nil {
			t.Fatalf("create phone %d: %v", i, err)
		}
	}

	probe := health.NewProbe(db)
	first := probe.State(ctx)
	if !first.Reachable || !first.BacklogKnown || first.Pending != created || first.Oldest.IsZero() {
		t.Fatalf("State: got %+v; want reachable, %d pending since a creation time", first, created)
	}
	pending, age, known := probe.Backlog(ctx)
	if !known || pending != created || age < 0 {
		t.Errorf("Backlog: got %d, %v, %v; want %d, an age >= 0, true", pending, age, known, created)
	}
	if again := probe.State(ctx); !again.At.Equal(first.At) {
		t.Errorf("State within MaxAge asked storage again: at %v, then %v", first.At, again.At)
	}

	closed = true
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(health.MaxAge + 5*time.Second)
	for {
		st := probe.State(ctx)
		if !st.Reachable {
			if _, _, known := probe.Backlog(ctx); known || st.BacklogKnown {
				t.Errorf("closed database: backlog known; want unknown (%+v)", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed database: still reachable after %v: %+v", health.MaxAge+5*time.Second, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
