// Package health probes what a replica's readiness depends on in storage:
// that it answers, and how far the outbox's delivery lags. One probe
// serves both /readyz and the backlog metrics, so that neither adds to
// the load of the database the API's requests wait for.
package health

import (
	"context"
	"sync/atomic"
	"time"
)

// Storage is what the probe asks of the database.
type Storage interface {
	Ping(ctx context.Context) error
	OutboxStats(ctx context.Context) (pending int64, oldest time.Time, err error)
}

// MaxAge is how old the state a Probe answers with may be.
const MaxAge = time.Second

// probeTimeout bounds one probe: a storage that takes longer is reported
// unreachable.
const probeTimeout = time.Second

// State is what one probe found.
type State struct {
	// At is when storage was asked.
	At        time.Time
	Reachable bool
	// BacklogKnown is false when storage did not answer for the outbox;
	// Pending and Oldest are then zero.
	BacklogKnown bool
	Pending      int64
	// Oldest is when the oldest event waiting was written; zero when none
	// waits.
	Oldest time.Time
}

// Probe asks storage whether it answers, and how far the outbox lags, at
// most once per MaxAge whatever the number of callers: one caller
// refreshes a stale answer while the others take the last one. A flood of
// anonymous health checks or scrapes thus costs the database one ping and
// one indexed query a second, and never a connection the API's requests
// wait for.
type Probe struct {
	storage Storage
	// probing is a one-slot semaphore held by the caller refreshing.
	probing chan struct{}
	last    atomic.Pointer[State]
}

// NewProbe returns a Probe of st; it asks nothing until first called.
func NewProbe(st Storage) *Probe {
	return &Probe{storage: st, probing: make(chan struct{}, 1)}
}

func (p *Probe) fresh() (State, bool) {
	s := p.last.Load()
	if s == nil {
		return State{}, false
	}
	return *s, time.Since(s.At) < MaxAge
}

// State returns the last probe's state, probing again when it is stale. A
// caller that finds a probe under way takes the last state, or waits for
// the first one until ctx ends, and then gets a state that found nothing.
func (p *Probe) State(ctx context.Context) State {
	if s, ok := p.fresh(); ok {
		return s
	}
	select {
	case p.probing <- struct{}{}:
	default:
		if s := p.last.Load(); s != nil {
			return *s
		}
		select {
		case p.probing <- struct{}{}:
		case <-ctx.Done():
			return State{At: time.Now()}
		}
	}
	defer func() { <-p.probing }()
	if s, ok := p.fresh(); ok {
		return s
	}
	// The probe outlives a caller that gives up: its answer is shared.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	defer cancel()
	s := State{At: time.Now()}
	if err := p.storage.Ping(pctx); err == nil {
		s.Reachable = true
		if pending, oldest, err := p.storage.OutboxStats(pctx); err == nil {
			s.BacklogKnown, s.Pending, s.Oldest = true, pending, oldest
		}
	}
	p.last.Store(&s)
	return s
}

// Backlog reports the outbox's events waiting for delivery and the age of
// the oldest, from the same state State answers with, at most MaxAge old;
// known is false while storage does not answer.
func (p *Probe) Backlog(ctx context.Context) (pending int64, oldestAge time.Duration, known bool) {
	s := p.State(ctx)
	if !s.BacklogKnown {
		return 0, 0, false
	}
	if !s.Oldest.IsZero() {
		oldestAge = time.Since(s.Oldest)
	}
	return s.Pending, oldestAge, true
}
