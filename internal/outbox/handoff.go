package outbox

import (
	"cmp"
	"slices"
	"sync"

	"github.com/phonesd/phonesd/internal/phone"
)

// Handoff carries the events a store has just committed to the relay in
// memory, so that the relay publishes them without reading them back from
// the outbox, which stays their durable record. It suits only a store
// whose delivery order is the order its single writer commits in, by seq,
// with no seq skipped (SQLite): the relay takes from it only events that
// directly follow the last it delivered, and reads the outbox whenever
// what the handoff holds does not (after a start, a handoff dropped or
// lost, an event committed without one), so that nothing is skipped or
// reordered.
//
// It holds at most maxHeldEvents events and maxHeldBytes of payload: a
// relay that lags (a slow sink, a failing one) finds it dropped and reads
// the outbox instead.
type Handoff struct {
	mu sync.Mutex
	// held are the events handed over and not yet taken, by seq when
	// sorted is true.
	held   []phone.Event
	bytes  int
	sorted bool
}

// The bounds of a Handoff: a few of the relay's rounds, well past what
// commits add while one round publishes.
const (
	maxHeldEvents = 4 * DefaultBatchSize
	maxHeldBytes  = 4 << 20
)

// NewHandoff returns an empty Handoff.
func NewHandoff() *Handoff {
	return &Handoff{sorted: true}
}

// Committed hands over events a transaction has just committed, with their
// seqs. The store's writer calls it after each commit that wrote events,
// and it never blocks for long. Calls may come out of commit order (two
// transactions finishing together): the relay takes events by seq.
func (h *Handoff) Committed(events []phone.Event) {
	if len(events) == 0 {
		return
	}
	size := 0
	for _, ev := range events {
		size += len(ev.Payload)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.held)+len(events) > maxHeldEvents || h.bytes+size > maxHeldBytes {
		// The relay lags: it will read the outbox, which holds these and
		// everything before them.
		h.held, h.bytes, h.sorted = nil, 0, true
		return
	}
	if n := len(h.held); n > 0 && h.held[n-1].Seq >= events[0].Seq {
		h.sorted = false
	}
	h.held = append(h.held, events...)
	h.bytes += size
}

// take returns up to limit events held that directly follow the seq after,
// in seq order, and forgets them and any event at or before after. It
// returns none when the first event held after after is not after+1: the
// outbox holds events the handoff lacks.
func (h *Handoff) take(after int64, limit int) []phone.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.sorted {
		slices.SortFunc(h.held, func(a, b phone.Event) int { return cmp.Compare(a.Seq, b.Seq) })
		h.sorted = true
	}
	skip := 0
	for skip < len(h.held) && h.held[skip].Seq <= after {
		skip++
	}
	n := 0
	for skip+n < len(h.held) && n < limit && h.held[skip+n].Seq == after+1+int64(n) {
		n++
	}
	events := slices.Clone(h.held[skip : skip+n])
	h.forget(skip + n)
	return events
}

// forget drops the first n events held.
func (h *Handoff) forget(n int) {
	for _, ev := range h.held[:n] {
		h.bytes -= len(ev.Payload)
	}
	rest := copy(h.held, h.held[n:])
	clear(h.held[rest:])
	h.held = h.held[:rest]
}
