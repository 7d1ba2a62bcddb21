package launch

import (
	"context"
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
)

// Process is one phonesd run by a tool: the same binary, address, data
// directory and environment across its restarts, so that a kill -9 and a
// start are what a crash and a supervisor's restart are. Its output goes
// to phonesd.log in its data directory, each start appending to it.
type Process struct {
	// Name tells the process apart in errors, such as "phonesd-2".
	Name    string
	Addr    string // host:port on loopback
	DataDir string
	LogPath string

	bin string
	env []string // KEY=VALUE, complete

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	state  *os.ProcessState
	starts int
}

// NewProcess prepares bin to run in dataDir, which must exist, on a free
// loopback port (PHONES_ADDR), with the caller's environment less its
// PHONES_ variables and env on top: a leftover PHONES_DATABASE_URL in a
// shell must not redirect a tool. It starts nothing.
func NewProcess(name, bin, dataDir string, env map[string]string) (*Process, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: name, Addr: addr, DataDir: dataDir, LogPath: filepath.Join(dataDir, "phonesd.log"), bin: bin}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PHONES_") {
			p.env = append(p.env, kv)
		}
	}
	vars := map[string]string{"PHONES_ADDR": addr}
	for k, v := range env {
		vars[k] = v
	}
	for k, v := range vars {
		p.env = append(p.env, k+"="+v)
	}
	return p, nil
}

// URL is the process's base URL.
func (p *Process) URL() string { return "http://" + p.Addr }

// Launch starts the process with extra KEY=VALUE pairs on top of its
// environment, without waiting for it to answer. It returns an error when
// the process is running already or cannot be started.
func (p *Process) Launch(extra ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("%s: already running", p.Name)
		}
	}
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.Name, err)
	}
	fmt.Fprintf(logFile, "--- start %d at %s %s\n", p.starts+1, time.Now().UTC().Format(time.RFC3339Nano), strings.Join(extra, " "))
	cmd := exec.Command(p.bin)
	cmd.Env = append(slices.Clone(p.env), extra...)
	cmd.Dir = p.DataDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.state = cmd, exited, nil
	p.starts++
	go func() {
		cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Start launches the process and waits until /readyz answers 200, for at
// most ReadyTimeout.
func (p *Process) Start(ctx context.Context, extra ...string) error {
	if err := p.Launch(extra...); err != nil {
		return err
	}
	return p.WaitReady(ctx, ReadyTimeout)
}

// WaitReady polls /readyz until it answers 200. It returns an error, with
// the end of the log, when the process exits first or limit passes, and
// ctx's error when ctx ends first.
func (p *Process) WaitReady(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	exited := p.Exited()
	for {
		select {
		case <-exited:
			return fmt.Errorf("%s exited (status %d) before it was ready\n%s", p.Name, p.ExitCode(), p.LogTail())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get(p.URL() + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: /readyz not 200 after %s\n%s", p.Name, limit, p.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Running reports whether the current process has not exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the current process exits; nil
// before the first launch.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// ExitCode returns the exit status of the last process, -1 when it was
// killed by a signal or still runs.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// PID returns the process id of the current process, 0 before the first
// launch.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL, as a crash or the OOM killer would, and waits for
// the process to be gone.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	// os.Process knows when it has been waited for, so a process that
	// already exited is never confused with another that got its pid.
	cmd.Process.Kill()
	<-exited
}

// Terminate sends SIGTERM and waits for the process to exit, killing it
// after StopTimeout. It returns how long the exit took and its status
// (-1 for killed), and an error, with the end of the log, when SIGTERM
// could not be sent or the process had to be killed.
func (p *Process) Terminate() (time.Duration, int, error) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return 0, 0, nil
	}
	select {
	case <-exited:
		return 0, p.ExitCode(), nil
	default:
	}
	began := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, -1, fmt.Errorf("%s: SIGTERM: %w", p.Name, err)
	}
	select {
	case <-exited:
		return time.Since(began), p.ExitCode(), nil
	case <-time.After(StopTimeout):
		p.Kill()
		return time.Since(began), -1, fmt.Errorf("%s did not exit within %s of SIGTERM; killed\n%s", p.Name, StopTimeout, p.LogTail())
	}
}

// Stop terminates the process and returns an error unless it exited with
// status 0 (or never ran).
func (p *Process) Stop() error {
	_, code, err := p.Terminate()
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%s exited with status %d\n%s", p.Name, code, p.LogTail())
	}
	return nil
}

// LogTail returns the last lines of the process's log, for an error message.
func (p *Process) LogTail() string { return LogTail(p.LogPath, 20) }
