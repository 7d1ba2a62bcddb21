package main

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersion builds phonesd in a fresh clone of the repository holding the
// files of this work tree, and checks that phonesd version prints the commit
// it was built from, and whether the tree had changes. (The Go toolchain
// stamps no revision in a test binary, nor in a linked git worktree.)
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and builds phonesd; run without -short")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not found")
	}
	top := gitOutput(t, "..", "rev-parse", "--show-toplevel")
	head := gitOutput(t, top, "rev-parse", "HEAD")
	clone := filepath.Join(t.TempDir(), "phonesd")
	gitOutput(t, "", "clone", "--quiet", "--no-checkout", top, clone)
	gitOutput(t, clone, "checkout", "--quiet", head)
	for f := range strings.SplitSeq(gitOutput(t, top, "ls-files", "-z", "--cached", "--others", "--exclude-standard"), "\x00") {
		if f != "" {
			copyFile(t, filepath.Join(top, f), filepath.Join(clone, f))
		}
	}
	changes := ""
	if gitOutput(t, top, "status", "--porcelain") != "" {
		changes = ", with uncommitted changes"
	}

	bin := filepath.Join(t.TempDir(), "phonesd")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/phonesd")
	build.Dir = clone
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("phonesd version: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "phonesd v") || !strings.HasPrefix(lines[1], "revision "+head+", committed ") || !strings.HasSuffix(lines[1], "Z"+changes) || !strings.HasPrefix(lines[2], "built with go") {
		t.Errorf("phonesd version printed\n%s\nwant the module version, revision %s, its time%s, and the Go version", out, head, changes)
	}
}

// copyFile copies from to to, mode included, or removes to when from is
// gone (a file deleted in the work tree).
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	info, err := os.Stat(from)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Remove(to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, info.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// gitOutput runs git in dir ("" for the test's own) and returns what it
// printed, trimmed.
func gitOutput(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}
