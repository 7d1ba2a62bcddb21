package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"
)

// healthz says the process is alive; it checks nothing else, so that an
// orchestrator restarts only a process that no longer answers.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

// readyz says whether this replica should get traffic: storage answers, the
// key set is loaded, and it is not draining. The outbox backlog is reported
// but never makes a replica not ready: a broker outage must not take the API
// down, since creates keep their events in the outbox meanwhile. The backlog
// and the warnings are left out when only the checks are shown. What it
// says of storage comes from the last probe (see storageProbe), at most
// about a second old: health checks, which need no token, never add to the
// load of the database the API's requests wait for.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	type outboxDetail struct {
		Pending          int64   `json:"pending"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	}
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
		// CheckedAt is when storage was last asked.
		CheckedAt time.Time     `json:"checked_at"`
		Outbox    *outboxDetail `json:"outbox,omitempty"`
		// Warnings are what an operator should see to, though the
		// replica serves.
		Warnings []string `json:"warnings,omitempty"`
	}
	body.Checks = map[string]string{"storage": "ok", "keys": "ok", "lifecycle": "serving"}
	ready := true
	st := s.storageProbe.get(r.Context())
	body.CheckedAt = st.at.UTC()
	if !st.reachable {
		body.Checks["storage"] = "unreachable"
		ready = false
	} else if st.backlogKnown {
		body.Outbox = &outboxDetail{Pending: st.pending}
		if !st.oldest.IsZero() {
			body.Outbox.OldestAgeSeconds = time.Since(st.oldest).Seconds()
		}
	}
	if !s.verifier.Ready() {
		body.Checks["keys"] = "not loaded"
		ready = false
	} else if w := s.keyFreshness.Warning(); w != "" {
		// Not a reason to stop serving: an unreachable identity
		// provider must not take the API down.
		body.Warnings = append(body.Warnings, w)
	}
	if s.draining.Load() {
		body.Checks["lifecycle"] = "draining"
		ready = false
	}
	if s.checksOnly {
		body.Outbox, body.Warnings = nil, nil
	}
	status := http.StatusOK
	body.Status = "ready"
	if !ready {
		status, body.Status = http.StatusServiceUnavailable, "not ready"
	}
	out, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

// Backlog reports the outbox's events waiting for delivery and the age of
// the oldest, from the same probe /readyz answers from, at most about a
// second old; known is false while storage does not answer.
func (s *Server) Backlog(ctx context.Context) (pending int64, oldestAge time.Duration, known bool) {
	st := s.storageProbe.get(ctx)
	if !st.backlogKnown {
		return 0, 0, false
	}
	if !st.oldest.IsZero() {
		oldestAge = time.Since(st.oldest)
	}
	return st.pending, oldestAge, true
}

// storageMaxAge is how old a storage probe /readyz answers from may be.
const storageMaxAge = time.Second

// storageProbeTimeout bounds one probe: a storage that takes longer is
// reported unreachable.
const storageProbeTimeout = time.Second

// storageState is what one probe found.
type storageState struct {
	at           time.Time
	reachable    bool
	backlogKnown bool
	pending      int64
	oldest       time.Time
}

// storageProbe asks storage whether it answers, and how far the outbox
// lags, at most once per storageMaxAge whatever the number of /readyz
// requests: one request refreshes a stale answer while the others take the
// last one. A flood of anonymous health checks thus costs the database one
// ping and one indexed query a second, and never a connection the API's
// requests wait for.
type storageProbe struct {
	storage Storage
	// probing is a one-slot semaphore held by the request refreshing.
	probing chan struct{}
	last    atomic.Pointer[storageState]
}

func newStorageProbe(st Storage) *storageProbe {
	return &storageProbe{storage: st, probing: make(chan struct{}, 1)}
}

func (p *storageProbe) fresh() (storageState, bool) {
	s := p.last.Load()
	if s == nil {
		return storageState{}, false
	}
	return *s, time.Since(s.at) < storageMaxAge
}

// get returns the last probe's state, probing again when it is stale. A
// request that finds a probe under way takes the last state, or waits for
// the first one.
func (p *storageProbe) get(ctx context.Context) storageState {
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
			return storageState{at: time.Now()}
		}
	}
	defer func() { <-p.probing }()
	if s, ok := p.fresh(); ok {
		return s
	}
	// The probe outlives a client that hangs up: its answer is shared.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageProbeTimeout)
	defer cancel()
	s := storageState{at: time.Now()}
	if err := p.storage.Ping(pctx); err == nil {
		s.reachable = true
		if pending, oldest, err := p.storage.OutboxStats(pctx); err == nil {
			s.backlogKnown, s.pending, s.oldest = true, pending, oldest
		}
	}
	p.last.Store(&s)
	return s
}
