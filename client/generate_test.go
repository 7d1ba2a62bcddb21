package client

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates the package's oas_* files from the
// contract and compares them with the committed ones, so that the two
// cannot drift apart.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerating takes a few seconds; run without -short")
	}
	tmp := t.TempDir()
	cmd := exec.Command("go", "tool", "ogen", "--config", "ogen.yml", "--target", tmp, "--package", "client", "--clean", "../api/openapi.json")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ogen: %v\n%s", err, out)
	}
	fresh, _ := filepath.Glob(filepath.Join(tmp, "*.go"))
	committed, _ := filepath.Glob("oas_*_gen.go")
	if len(fresh) != len(committed) {
		t.Fatalf("ogen makes %d files, the package has %d: run go generate ./client", len(fresh), len(committed))
	}
	for _, f := range fresh {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Base(f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what api/openapi.json generates: run go generate ./client", filepath.Base(f))
		}
	}
}
