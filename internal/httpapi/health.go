package httpapi

import (
	"context"
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
// down, since creates keep their events in the outbox meanwhile.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	type outboxDetail struct {
		Pending          int64   `json:"pending"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	}
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
		Outbox *outboxDetail     `json:"outbox,omitempty"`
	}
	body.Checks = map[string]string{"storage": "ok", "keys": "ok", "lifecycle": "serving"}
	ready := true
	if err := s.storage.Ping(ctx); err != nil {
		body.Checks["storage"] = "unreachable"
		ready = false
	} else if pending, oldest, err := s.storage.OutboxStats(ctx); err == nil {
		body.Outbox = &outboxDetail{Pending: pending}
		if !oldest.IsZero() {
			body.Outbox.OldestAgeSeconds = time.Since(oldest).Seconds()
		}
	}
	if !s.verifier.Ready() {
		body.Checks["keys"] = "not loaded"
		ready = false
	}
	if s.draining.Load() {
		body.Checks["lifecycle"] = "draining"
		ready = false
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

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.spec)
}
