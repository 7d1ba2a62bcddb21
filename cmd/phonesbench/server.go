package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"phonesd/internal/testkit/launch"
)

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

// service is a phonesd process started by the bench.
type service struct {
	cmd     *exec.Cmd
	base    string // http://host:port
	logPath string
	exited  chan struct{}
	waitErr error // set before exited closes
}

// startPhonesd runs bin with env, plus extra KEY=VALUE pairs, on a free
// loopback port, its output going to phonesd.log in dataDir, and waits until
// it answers /readyz with 200. The caller's own PHONES_* variables are not
// passed on: a leftover PHONES_DATABASE_URL in a shell must not redirect
// the benchmark.
func startPhonesd(ctx context.Context, bin, dataDir string, env map[string]string, extra []string) (*service, error) {
	addr, err := launch.FreeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dataDir, "phonesd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("phonesd log: %w", err)
	}
	var vars []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PHONES_") {
			vars = append(vars, kv)
		}
	}
	vars = append(vars, "PHONES_ADDR="+addr)
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	vars = append(vars, extra...)

	cmd := exec.Command(bin)
	cmd.Env = vars
	cmd.Dir = dataDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start phonesd: %w", err)
	}
	s := &service{cmd: cmd, base: "http://" + addr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		return nil, errors.Join(err, s.stop())
	}
	return s, nil
}

func (s *service) pid() int { return s.cmd.Process.Pid }

// waitReady polls /readyz until it answers 200.
func (s *service) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(launch.ReadyTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("phonesd exited at start: %v\n%s", s.waitErr, s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get(s.base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("phonesd /readyz not 200 after %s\n%s", launch.ReadyTimeout, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for phonesd to exit, killing it after
// launch.StopTimeout. It returns an error when phonesd exited other than with 0.
func (s *service) stop() error {
	select {
	case <-s.exited:
	default:
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stop phonesd: %w", err)
		}
		select {
		case <-s.exited:
		case <-time.After(launch.StopTimeout):
			s.cmd.Process.Kill()
			<-s.exited
			return fmt.Errorf("phonesd did not stop within %s of SIGTERM; killed\n%s", launch.StopTimeout, s.logTail())
		}
	}
	if s.waitErr != nil {
		return fmt.Errorf("phonesd: %w\n%s", s.waitErr, s.logTail())
	}
	return nil
}

// peakRSS returns phonesd's peak resident set size so far (VmHWM), in bytes.
func (s *service) peakRSS() (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(s.pid()) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// cpuTime returns the CPU phonesd has used so far, user and system.
func (s *service) cpuTime() (time.Duration, error) {
	return processCPU(s.pid())
}

// logTail returns the last lines of phonesd's log, for an error message.
func (s *service) logTail() string { return launch.LogTail(s.logPath, 20) }

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
