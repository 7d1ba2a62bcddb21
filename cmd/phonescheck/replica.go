package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/launch"
)

// newReplica prepares one phonesd of a scenario, on a free loopback port
// with its own data directory under dir, logging warnings and errors only;
// env is added to the variables every replica gets. The same process
// restarts with the same address, data directory and environment, so that
// a kill -9 and a start are what a crash and a supervisor's restart are.
func newReplica(name, bin, dir string, env map[string]string) (*launch.Process, error) {
	dataDir := filepath.Join(dir, name)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	return replicaOn(name, bin, dataDir, env)
}

// replicaOn prepares a phonesd as newReplica does, on the data directory
// dataDir, which must exist.
func replicaOn(name, bin, dataDir string, env map[string]string) (*launch.Process, error) {
	vars := map[string]string{
		"PHONES_DATA_DIR":  dataDir,
		"PHONES_LOG_LEVEL": "warn",
	}
	for k, v := range env {
		vars[k] = v
	}
	return launch.NewProcess(name, bin, dataDir, vars)
}

// readiness is what /readyz says.
type readiness struct {
	status  int
	pending int64 // -1 when the body has no outbox detail
	// checkedAt is when phonesd last asked its storage, which /readyz
	// does at most once a second.
	checkedAt time.Time
}

// ready asks the /readyz of r once.
func ready(r *launch.Process, client *http.Client) (readiness, error) {
	resp, err := client.Get(r.URL() + "/readyz")
	if err != nil {
		return readiness{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return readiness{}, err
	}
	var body struct {
		CheckedAt time.Time `json:"checked_at"`
		Outbox    *struct {
			Pending int64 `json:"pending"`
		} `json:"outbox"`
	}
	rd := readiness{status: resp.StatusCode, pending: -1}
	if json.Unmarshal(b, &body) == nil {
		rd.checkedAt = body.CheckedAt
		if body.Outbox != nil {
			rd.pending = body.Outbox.Pending
		}
	}
	return rd, nil
}
