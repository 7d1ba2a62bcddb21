package api

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates the package's oas_* files from the
// contract and compares them with the committed ones, so that the two
// cannot drift apart. The generator is a tool of the repository's root
// module, reached through go.work; a consumer who builds this module alone
// has no generator, and the test skips.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerating takes a few seconds; run without -short")
	}
	if out, err := exec.Command("go", "tool", "-n", "ogen").CombinedOutput(); err != nil {
		if os.Getenv("PHONES_TEST_REQUIRE_TOOLS") != "" {
			t.Fatalf("no ogen tool: %s", bytes.TrimSpace(out))
		}
		t.Skipf("no ogen tool here (this module built outside its repository): %s", bytes.TrimSpace(out))
	}
	tmp := t.TempDir()
	cmd := exec.Command("go", "tool", "ogen", "--config", "ogen.yml", "--target", tmp, "--package", "api", "--clean", "openapi.json")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ogen: %v\n%s", err, out)
	}
	fresh, _ := filepath.Glob(filepath.Join(tmp, "*.go"))
	committed, _ := filepath.Glob("oas_*_gen.go")
	if len(fresh) != len(committed) {
		t.Fatalf("ogen makes %d files, the package has %d: run go generate in api/", len(fresh), len(committed))
	}
	for _, f := range fresh {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Base(f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what openapi.json generates: run go generate in api/", filepath.Base(f))
		}
	}
}
