package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"phonesd/internal/testkit/launch"
)

// replica is one phonesd of a scenario: the same address, data directory
// and environment across its restarts, so that a kill -9 and a start are
// what a crash and a supervisor's restart are.
type replica struct {
	name    string
	bin     string
	addr    string
	dataDir string
	env     []string // KEY=VALUE, complete
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	state  *os.ProcessState
	starts int
}

// newReplica prepares a replica on a free loopback port with its own data
// directory under dir; env is added to the variables every replica gets.
func newReplica(name, bin, dir string, env map[string]string) (*replica, error) {
	addr, err := launch.FreeAddr()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, name)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	r := &replica{name: name, bin: bin, addr: addr, dataDir: dataDir, logPath: filepath.Join(dataDir, "phonesd.log")}
	// The caller's own PHONES_* variables are not passed on: a leftover
	// PHONES_DATABASE_URL in a shell must not redirect the checker.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PHONES_") {
			r.env = append(r.env, kv)
		}
	}
	vars := map[string]string{
		"PHONES_ADDR":      addr,
		"PHONES_DATA_DIR":  dataDir,
		"PHONES_LOG_LEVEL": "warn",
	}
	for k, v := range env {
		vars[k] = v
	}
	for k, v := range vars {
		r.env = append(r.env, k+"="+v)
	}
	return r, nil
}

// base is the replica's URL.
func (r *replica) base() string { return "http://" + r.addr }

// launch starts the process with extra KEY=VALUE pairs on top of its
// environment, without waiting for it to answer.
func (r *replica) launch(extra ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		select {
		case <-r.exited:
		default:
			return fmt.Errorf("%s: already running", r.name)
		}
	}
	logFile, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: log: %w", r.name, err)
	}
	fmt.Fprintf(logFile, "--- phonescheck: start %d at %s %s\n", r.starts+1, time.Now().UTC().Format(time.RFC3339Nano), strings.Join(extra, " "))
	cmd := exec.Command(r.bin)
	cmd.Env = append(slices.Clone(r.env), extra...)
	cmd.Dir = r.dataDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("%s: start phonesd: %w", r.name, err)
	}
	exited := make(chan struct{})
	r.cmd, r.exited, r.state = cmd, exited, nil
	r.starts++
	go func() {
		cmd.Wait()
		logFile.Close()
		r.mu.Lock()
		r.state = cmd.ProcessState
		r.mu.Unlock()
		close(exited)
	}()
	return nil
}

// start launches the process and waits until /readyz answers 200.
func (r *replica) start(ctx context.Context, extra ...string) error {
	if err := r.launch(extra...); err != nil {
		return err
	}
	return r.waitReady(ctx, launch.ReadyTimeout)
}

// running reports whether the current process has not exited.
func (r *replica) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return false
	}
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// exitedChan returns the channel closed when the current process exits.
func (r *replica) exitedChan() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exited
}

// exitCode returns the exit status of the last process, -1 when it was
// killed by a signal or still runs.
func (r *replica) exitCode() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return -1
	}
	return r.state.ExitCode()
}

// waitReady polls /readyz until it answers 200.
func (r *replica) waitReady(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	exited := r.exitedChan()
	for {
		select {
		case <-exited:
			return fmt.Errorf("%s: phonesd exited (status %d) before it was ready\n%s", r.name, r.exitCode(), r.logTail())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get(r.base() + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: /readyz not 200 after %s\n%s", r.name, limit, r.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL, as a crash or the OOM killer would, and waits for
// the process to be gone.
func (r *replica) kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// terminate sends SIGTERM and waits for the process to exit, killing it
// after launch.StopTimeout. It returns how long the exit took and its status.
func (r *replica) terminate() (time.Duration, int, error) {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return 0, 0, nil
	}
	select {
	case <-exited:
		return 0, r.exitCode(), nil
	default:
	}
	began := time.Now()
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return 0, -1, fmt.Errorf("%s: SIGTERM: %w", r.name, err)
	}
	select {
	case <-exited:
		return time.Since(began), r.exitCode(), nil
	case <-time.After(launch.StopTimeout):
		r.kill()
		return time.Since(began), -1, fmt.Errorf("%s: phonesd did not exit within %s of SIGTERM; killed", r.name, launch.StopTimeout)
	}
}

// readiness is what /readyz says.
type readiness struct {
	status  int
	pending int64 // -1 when the body has no outbox detail
	// checkedAt is when phonesd last asked its storage, which /readyz
	// does at most once a second.
	checkedAt time.Time
}

// ready asks /readyz once.
func (r *replica) ready(client *http.Client) (readiness, error) {
	resp, err := client.Get(r.base() + "/readyz")
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

// logTail returns the last lines of the replica's log, for an error message.
func (r *replica) logTail() string { return launch.LogTail(r.logPath, 15) }
