package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// eventCounter counts the events delivered so far.
type eventCounter interface {
	count() (int64, error)
}

// filesCounter counts the lines of several events files: one per replica,
// the relay that holds the lease writing to its own.
type filesCounter []*lineCounter

func (c filesCounter) count() (int64, error) {
	var total int64
	for _, lc := range c {
		n, err := lc.count()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// startReplicas starts n phonesd on the same storage, replica i with the
// data directory dataDir/replica-i and its events file there; a lone
// replica uses dataDir itself. It returns them with a counter of the
// events their files hold, or stops those started on an error.
func startReplicas(ctx context.Context, bin, dataDir string, n int, env map[string]string, extra []string) (_ []*service, _ filesCounter, err error) {
	var (
		svcs  []*service
		files filesCounter
	)
	defer func() {
		if err != nil {
			err = errors.Join(err, stopReplicas(svcs))
		}
	}()
	for i := range n {
		dir := dataDir
		if n > 1 {
			dir = filepath.Join(dataDir, "replica-"+strconv.Itoa(i+1))
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, nil, err
			}
		}
		vars := make(map[string]string, len(env)+2)
		for k, v := range env {
			vars[k] = v
		}
		vars["PHONES_DATA_DIR"] = dir
		events := filepath.Join(dir, "events.jsonl")
		if _, ok := env["PHONES_EVENTS_URL"]; !ok {
			vars["PHONES_EVENTS_URL"] = "file://" + events
		}
		svc, err := startPhonesd(ctx, bin, dir, vars, extra)
		if err != nil {
			return nil, nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		svcs = append(svcs, svc)
		files = append(files, &lineCounter{path: events})
	}
	return svcs, files, nil
}

// stopReplicas stops every replica; each must exit with 0.
func stopReplicas(svcs []*service) error {
	var errs []error
	for i, s := range svcs {
		if err := s.stop(); err != nil {
			errs = append(errs, fmt.Errorf("replica %d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

// replicasCPU returns a reader of the CPU the replicas have used so far,
// all together.
func replicasCPU(svcs []*service) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		var total time.Duration
		for _, s := range svcs {
			used, err := s.cpuTime()
			if err != nil {
				return 0, err
			}
			total += used
		}
		return total, nil
	}
}
