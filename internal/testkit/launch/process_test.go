package launch

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary stand in for phonesd: with
// LAUNCH_TEST_FAKE set, it serves /readyz on PHONES_ADDR and exits with
// LAUNCH_TEST_EXIT on SIGTERM, or at once with LAUNCH_TEST_FAIL.
func TestMain(m *testing.M) {
	if os.Getenv("LAUNCH_TEST_FAKE") == "" {
		os.Exit(m.Run())
	}
	if v := os.Getenv("LAUNCH_TEST_FAIL"); v != "" {
		os.Stderr.WriteString("fake phonesd: " + v + "\n")
		os.Exit(3)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {})
	go http.ListenAndServe(os.Getenv("PHONES_ADDR"), nil)
	<-term
	code, _ := strconv.Atoi(os.Getenv("LAUNCH_TEST_EXIT"))
	os.Exit(code)
}

func fake(t *testing.T, env map[string]string) *Process {
	t.Helper()
	env["LAUNCH_TEST_FAKE"] = "1"
	p, err := NewProcess("fake", os.Args[0], t.TempDir(), env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func TestProcessRestarts(t *testing.T) {
	t.Setenv("PHONES_DATABASE_URL", "postgres://leftover")
	p := fake(t, map[string]string{})
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := p.Launch(); err == nil {
		t.Error("Launch while running: got nil error; want one")
	}
	first := p.PID()
	p.Kill()
	if p.Running() || p.ExitCode() != -1 {
		t.Errorf("after Kill: running %t, status %d; want false, -1", p.Running(), p.ExitCode())
	}
	if err := p.Start(ctx, "LAUNCH_TEST_EXIT=0"); err != nil {
		t.Fatalf("Start again: %v", err)
	}
	if p.PID() == first {
		t.Errorf("restart kept pid %d", first)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	log, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "--- start "); n != 2 {
		t.Errorf("log marks %d starts; want 2:\n%s", n, log)
	}
	env := strings.Join(p.env, "\n")
	if strings.Contains(env, "leftover") || !strings.Contains(env, "PHONES_ADDR="+p.Addr) {
		t.Errorf("environment passes the caller's PHONES_ variables on, or lacks PHONES_ADDR:\n%s", env)
	}
}

func TestProcessStopReportsStatus(t *testing.T) {
	p := fake(t, map[string]string{"LAUNCH_TEST_EXIT": "2"})
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	took, code, err := p.Terminate()
	if err != nil || code != 2 || took <= 0 || took > StopTimeout {
		t.Errorf("Terminate: took %v, status %d, error %v; want status 2", took, code, err)
	}
	if err := p.Stop(); err == nil || !strings.Contains(err.Error(), "status 2") {
		t.Errorf("Stop after a status 2: got error %v; want one naming the status", err)
	}
}

func TestProcessExitsBeforeReady(t *testing.T) {
	p := fake(t, map[string]string{"LAUNCH_TEST_FAIL": "no database"})
	err := p.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "status 3") || !strings.Contains(err.Error(), "fake phonesd: no database") {
		t.Errorf("Start: got error %v; want the exit status and the end of the log", err)
	}
	if p.Running() {
		t.Error("Running after the exit: got true")
	}
}
