package httpapi

import (
	"encoding/json"
	"net/http"
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
// says of storage comes from the last probe (see health.Probe), at most
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
	st := s.health.State(r.Context())
	body.CheckedAt = st.At.UTC()
	if !st.Reachable {
		body.Checks["storage"] = "unreachable"
		ready = false
	} else if st.BacklogKnown {
		body.Outbox = &outboxDetail{Pending: st.Pending}
		if !st.Oldest.IsZero() {
			body.Outbox.OldestAgeSeconds = time.Since(st.Oldest).Seconds()
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
