package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/launch"
	"github.com/phonesd/phonesd/internal/testkit/procstat"
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
func startReplicas(ctx context.Context, bin, dataDir string, n int, env map[string]string, extra []string) (_ []*launch.Process, _ filesCounter, err error) {
	var (
		svcs  []*launch.Process
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
		svc, err := launch.NewProcess("phonesd", bin, dir, vars)
		if err != nil {
			return nil, nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		if err := svc.Start(ctx, extra...); err != nil {
			return nil, nil, fmt.Errorf("replica %d: %w", i+1, errors.Join(err, svc.Stop()))
		}
		svcs = append(svcs, svc)
		files = append(files, &lineCounter{path: events})
	}
	return svcs, files, nil
}

// stopReplicas stops every replica; each must exit with 0.
func stopReplicas(svcs []*launch.Process) error {
	var errs []error
	for i, s := range svcs {
		if err := s.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("replica %d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

// replicasCPU returns a reader of the CPU the replicas have used so far,
// all together.
func replicasCPU(svcs []*launch.Process) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		var total time.Duration
		for _, s := range svcs {
			used, err := procstat.ProcessCPU(s.PID())
			if err != nil {
				return 0, err
			}
			total += used
		}
		return total, nil
	}
}

// managedEnv are the variables the bench sets for phonesd; --env may not
// override them.
var managedEnv = map[string]bool{
	"PHONES_ADDR":         true,
	"PHONES_DATA_DIR":     true,
	"PHONES_DATABASE_URL": true,
	"PHONES_JWKS_URL":     true,
	"PHONES_JWT_ISSUER":   true,
	"PHONES_JWT_AUDIENCE": true,
	"PHONES_EVENTS_URL":   true,
	"PHONES_LOG_LEVEL":    true,
	// --ha's stream.
	"PHONES_NATS_STREAM":         true,
	"PHONES_NATS_SUBJECT_PREFIX": true,
	"PHONES_NATS_REPLICAS":       true,
}

// lineCounter counts the lines of a file that only grows, reading each
// byte once however often it is asked.
type lineCounter struct {
	path   string
	offset int64
	lines  int64
}

// count returns the lines the file holds now; a file not created yet has none.
func (c *lineCounter) count() (int64, error) {
	f, err := os.Open(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(c.offset, io.SeekStart); err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := f.Read(buf)
		c.offset += int64(n)
		c.lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return c.lines, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// waitForEvents waits until at least want events are delivered (delivery
// is at least once, so there may be more), or for at most limit.
// It returns how long that took and how many events were still missing.
func waitForEvents(ctx context.Context, events eventCounter, want int64, limit time.Duration) (time.Duration, int64, error) {
	start := time.Now()
	for {
		n, err := events.count()
		if err != nil {
			return 0, 0, fmt.Errorf("count delivered events: %w", err)
		}
		if n >= want {
			return time.Since(start), 0, nil
		}
		if time.Since(start) > limit {
			return time.Since(start), want - n, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
