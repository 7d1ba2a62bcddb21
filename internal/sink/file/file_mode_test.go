//go:build unix

package file_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestFileSinkCreatesAPrivateFile(t *testing.T) {
	// Even with a umask that takes no bits, events hold phone numbers.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	openSink(t, path)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode of a new events file: got %v; want 0600", perm)
	}
}
