package outbox

import (
	"slices"
	"testing"

	"github.com/phonesd/phonesd/internal/phone"
)

func seqs(from, to int64) []phone.Event {
	var events []phone.Event
	for s := from; s <= to; s++ {
		events = append(events, phone.Event{Seq: s, Payload: []byte("{}")})
	}
	return events
}

func seqsOf(events []phone.Event) []int64 {
	var out []int64
	for _, ev := range events {
		out = append(out, ev.Seq)
	}
	return out
}

// TestHandoffTakesOnlyWhatFollows checks a take returns only the events
// directly after the position, by seq whatever the order they came in,
// and nothing across a gap.
func TestHandoffTakesOnlyWhatFollows(t *testing.T) {
	h := NewHandoff()
	h.Committed(seqs(5, 6))
	h.Committed(seqs(3, 4)) // two commits handed over out of order
	h.Committed(seqs(9, 9)) // 7 and 8 never handed over
	if got := seqsOf(h.take(1, 10)); got != nil {
		t.Errorf("take after 1: got %v; want none (2 is missing)", got)
	}
	if got, want := seqsOf(h.take(2, 3)), []int64{3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("take after 2: got %v; want %v", got, want)
	}
	if got, want := seqsOf(h.take(5, 10)), []int64{6}; !slices.Equal(got, want) {
		t.Errorf("take after 5: got %v; want %v", got, want)
	}
	if got := seqsOf(h.take(6, 10)); got != nil {
		t.Errorf("take after 6: got %v; want none (7 is missing)", got)
	}
	// The relay read 7 and 8 from the outbox.
	if got, want := seqsOf(h.take(8, 10)), []int64{9}; !slices.Equal(got, want) {
		t.Errorf("take after 8: got %v; want %v", got, want)
	}
	if len(h.held) != 0 || h.bytes != 0 {
		t.Errorf("held after taking everything: %d events, %d bytes; want none", len(h.held), h.bytes)
	}
}

// TestHandoffDropsWhenFull checks a lagging relay's handoff is bounded: it
// is dropped whole, and the relay reads the outbox.
func TestHandoffDropsWhenFull(t *testing.T) {
	h := NewHandoff()
	h.Committed(seqs(1, maxHeldEvents))
	h.Committed(seqs(maxHeldEvents+1, maxHeldEvents+1))
	if len(h.held) != 0 || h.bytes != 0 {
		t.Fatalf("held after overflowing: %d events, %d bytes; want none", len(h.held), h.bytes)
	}
	if got := h.take(0, 10); got != nil {
		t.Errorf("take after overflowing: got %v; want none", seqsOf(got))
	}
	h.Committed([]phone.Event{{Seq: 1, Payload: make([]byte, maxHeldBytes+1)}})
	if len(h.held) != 0 {
		t.Errorf("held an event larger than the bound; want it dropped")
	}
}
