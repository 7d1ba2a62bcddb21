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
// key set is loaded, and it is not draining.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	checks := map[string]string{"storage": "ok", "keys": "ok", "lifecycle": "serving"}
	ready := true
	if err := s.storage.Ping(ctx); err != nil {
		checks["storage"] = "unreachable"
		ready = false
	}
	if !s.verifier.Ready() {
		checks["keys"] = "not loaded"
		ready = false
	}
	if s.draining.Load() {
		checks["lifecycle"] = "draining"
		ready = false
	}
	status, word := http.StatusOK, "ready"
	if !ready {
		status, word = http.StatusServiceUnavailable, "not ready"
	}
	body, _ := json.Marshal(map[string]any{"status": word, "checks": checks})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.spec)
}
