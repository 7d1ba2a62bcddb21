package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/phone"
)

// TestCommittedHandsOverEventsWithTheirSeqs creates phones in a batch
// larger than one statement (and with a duplicate among them), and
// changes one, and checks that Committed was given every stored event,
// with the seq the outbox gave it, and nothing else.
func TestCommittedHandsOverEventsWithTheirSeqs(t *testing.T) {
	var (
		mu     sync.Mutex
		handed = map[string]int64{}
	)
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "phones.db"), Options{Committed: func(events []phone.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			handed[ev.ID] = ev.Seq
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	typ := string(phone.Mobile)
	var cs []phone.Creation
	for i := range 2*maxRowsPerStatement + 3 {
		number := fmt.Sprintf("9000-%04d", i%(2*maxRowsPerStatement)) // the last three repeat the first
		p, err := phone.New("tenant-a", 1, nil, phone.Draft{Number: &number, Type: &typ})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, phone.Creation{Phone: p, EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)})
	}
	outs, err := db.CreatePhones(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if outs[len(outs)-1].Err == nil {
		t.Fatal("the repeated number was stored; want a duplicate")
	}
	_, err = db.UpdatePhone(ctx, phone.Change{Tenant: "tenant-a", AccountID: 1, ID: outs[0].Phone.ID,
		Apply: func(cur phone.Phone, at time.Time) (phone.Write, bool, error) {
			next := cur
			next.Active = false
			w, err := phone.Changed(cur, next, at, "00000000-0000-4000-8000-100000000000", phone.Audit{})
			return w, true, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := db.EventsAfter(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handed) != len(stored) {
		t.Errorf("handed over %d events; the outbox holds %d", len(handed), len(stored))
	}
	for _, ev := range stored {
		if seq, ok := handed[ev.ID]; !ok || seq != ev.Seq {
			t.Errorf("event %s: handed over with seq %d (%t); stored with %d", ev.ID, seq, ok, ev.Seq)
		}
	}
}
