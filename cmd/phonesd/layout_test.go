package main

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestREADMELayout holds the README's layout to the tree: every directory
// of Go code under cmd/ and internal/ is named there once, and every
// directory named there under them exists (one may hold no Go code, as
// internal/httpapi/redoc holds the reference's renderer), so that the map
// a reader takes the architecture from cannot go stale.
func TestREADMELayout(t *testing.T) {
	const root = "../.."
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, found := strings.Cut(string(readme), "\n## Layout\n")
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, fenced := strings.Cut(section, "\n```\n")
	block, _, closed := strings.Cut(block, "\n```")
	if !found || !fenced || !closed {
		t.Fatal("README: no code block under a heading ## Layout")
	}
	named := map[string]bool{}
	for line := range strings.SplitSeq(block, "\n") {
		if line == "" || line[0] == ' ' {
			continue // a description's continuation
		}
		entry := strings.TrimSuffix(strings.Fields(line)[0], "/")
		if !strings.HasPrefix(entry, "cmd/") && !strings.HasPrefix(entry, "internal/") {
			continue
		}
		if named[entry] {
			t.Errorf("README's layout names %s twice", entry)
		}
		named[entry] = true
	}

	withGo := map[string]bool{}
	for _, top := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "data" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir // fixtures and a run's data, not packages
			}
			if !d.IsDir() && strings.HasSuffix(d.Name(), ".go") {
				rel, err := filepath.Rel(root, filepath.Dir(p))
				withGo[filepath.ToSlash(rel)] = true
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(withGo) == 0 {
		t.Fatal("no Go code found under cmd/ and internal/")
	}

	for _, dir := range slices.Sorted(maps.Keys(withGo)) {
		if !named[dir] {
			t.Errorf("%s holds Go code, and README's layout does not name it: add a line saying what it holds", dir)
		}
	}
	for _, entry := range slices.Sorted(maps.Keys(named)) {
		if info, err := os.Stat(filepath.Join(root, filepath.FromSlash(entry))); err != nil || !info.IsDir() {
			t.Errorf("README's layout names %s, which is no directory of the repository", entry)
		}
	}
}
