//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	phonesdlaunch "github.com/phonesd/phonesd/internal/testkit/launch"
)

// TestDataFilesArePrivate starts phonesd in development mode with a umask
// that takes no bits: the data directory it creates must still be 0700,
// and the database, its WAL and shared memory, the events file, the
// development key and the lock file 0600.
func TestDataFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	s := startWith(t, map[string]string{"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": dir})
	m := regexp.MustCompile(`export TOKEN=(\S+)`).FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("no token printed:\n%s", s.stderr.String())
	}
	s.token = m[1]
	createdID(t, s.create(1, `{"number": "5555-0001", "type": "MOBILE"}`))
	s.events(1)
	want := map[string]os.FileMode{
		"":                    0o700,
		"phones.db":           0o600,
		"phones.db-wal":       0o600,
		"phones.db-shm":       0o600,
		"events.jsonl":        0o600,
		"dev-signing-key.pem": 0o600,
		"phonesd.lock":        0o600,
	}
	for name, mode := range want {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := info.Mode().Perm(); got != mode {
			t.Errorf("mode of %s: got %#o; want %#o", filepath.Join(dir, name), got, mode)
		}
	}
}

func TestDataDirOpenToOthersIsReported(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := start(t, map[string]string{"PHONES_DATA_DIR": dir})
	if r := s.do(http.MethodGet, "/readyz", ""); r.status != http.StatusOK {
		t.Fatalf("/readyz: %d; want 200: the warning does not stop the start", r.status)
	}
	var warning string
	for line := range strings.Lines(s.logs.String()) {
		if strings.Contains(line, "data directory is open to other users") {
			warning = line
		}
	}
	if !strings.Contains(warning, dir) || !strings.Contains(warning, "0755") {
		t.Errorf("no warning naming %s and its mode 0755 in the log:\n%s", dir, s.logs.String())
	}
}

// TestOneProcessPerDataDirectory runs the real binary twice on one data
// directory, and twice with two data directories on one events file: the
// second exits within a second, with one line naming the directory and the
// first's pid, and the first serves on.
func TestOneProcessPerDataDirectory(t *testing.T) {
	bin, err := phonesdlaunch.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keys := newTestKeys(t)
	private := func(t *testing.T) string {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	env := func(dataDir string) map[string]string {
		return map[string]string{
			"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": dataDir,
			"PHONES_JWKS_URL": keys.url, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
		}
	}
	for _, c := range []struct {
		name string
		// second returns the environments of the two processes and the
		// directory the second must name, with its variable.
		envs func(t *testing.T) (first, second map[string]string, dir, variable string)
	}{
		{"one data directory", func(t *testing.T) (map[string]string, map[string]string, string, string) {
			dir := private(t)
			return env(dir), env(dir), dir, "PHONES_DATA_DIR"
		}},
		{"one events file for two data directories", func(t *testing.T) (map[string]string, map[string]string, string, string) {
			shared := private(t)
			a, b := env(private(t)), env(private(t))
			a["PHONES_EVENTS_URL"] = "file://" + filepath.Join(shared, "events.jsonl")
			b["PHONES_EVENTS_URL"] = a["PHONES_EVENTS_URL"]
			return a, b, shared, "PHONES_EVENTS_URL"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			firstEnv, secondEnv, dir, variable := c.envs(t)
			first := spawn(t, bin, firstEnv)
			first.waitReady(t, firstEnv["PHONES_ADDR"])

			cmd := exec.Command(bin)
			for k, v := range secondEnv {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			began := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err = <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("a second phonesd on %s still ran after 10s; want it to exit within a second\n%s", dir, stdout.String())
			}
			took := time.Since(began)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("second phonesd: %v; want exit status 1", err)
			}
			if took > time.Second {
				t.Errorf("second phonesd exited after %v; want within a second", took.Round(time.Millisecond))
			}
			line := stderr.String()
			pid := "pid " + strconv.Itoa(first.cmd.Process.Pid)
			if strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "phonesd: "+variable+": "+dir+" ") || !strings.Contains(line, pid) || stdout.Len() > 0 {
				t.Errorf("second phonesd wrote %q and logged %q; want one line naming %s, %s and %s, and no log", line, stdout.String(), variable, dir, pid)
			}
			t.Logf("second phonesd exited after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(line))

			// The first serves on, and its events are its own.
			req, _ := http.NewRequest(http.MethodPost, "http://"+firstEnv["PHONES_ADDR"]+"/accounts/v1/accounts/1/phones", strings.NewReader(okBody))
			req.Header.Set("Authorization", "Bearer "+keys.token(t, nil))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("create on the first phonesd after the second's try: %d; want 200", resp.StatusCode)
			}
		})
	}
}
