// Package migration reads the migrations of a store: the numbered SQL files
// that build its schema. Each store applies them itself, in its own
// dialect, transactions and locks; what they share is how the files are
// named, checked and ordered.
package migration

import (
	"cmp"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Migration is one schema change: the SQL of one file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// MaxVersion is the largest version a migration may have: both stores
// record versions in an INTEGER column, which PostgreSQL keeps in 32 bits.
const MaxVersion = 1<<31 - 1

// Read returns the migrations in the directory dir of fsys, one per
// file, sorted by version: the number before the first '_' of the file's
// name. It returns an error when a name does not start with a version from
// 1 to MaxVersion and '_', when two files share a version, or when the
// directory or a file cannot be read.
func Read(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var migrations []Migration
	seen := make(map[int]string)
	for _, e := range entries {
		name := e.Name()
		prefix, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(prefix)
		if !ok || err != nil || version <= 0 || version > MaxVersion {
			return nil, fmt.Errorf("migration %s: name must start with a version from 1 to %d and '_'", name, MaxVersion)
		}
		if other, dup := seen[version]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, name, version)
		}
		seen[version] = name
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		migrations = append(migrations, Migration{Version: version, Name: name, SQL: string(body)})
	}
	slices.SortFunc(migrations, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	return migrations, nil
}
