package launch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "phonesd.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := LogTail(path, 2), "last lines of "+path+":\ntwo\nthree"; got != want {
		t.Errorf("LogTail: got %q; want %q", got, want)
	}
	if got := LogTail(filepath.Join(t.TempDir(), "missing.log"), 2); !strings.HasPrefix(got, "(no log: ") {
		t.Errorf("LogTail of a missing file: got %q", got)
	}
}

func TestFreeAddr(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Errorf("FreeAddr: %q; want a loopback address", addr)
	}
}
