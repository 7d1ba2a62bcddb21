//go:build unix

package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestDataFilesArePrivate starts phonesd in development mode with a umask
// that takes no bits: the data directory it creates must still be 0700,
// and the database, its WAL and shared memory, the events file and the
// development key 0600.
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
