package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// inspectDataDir returns an error when dir exists and is no directory, and
// warns when it lets other users in: the database, the events file and the
// development key in it hold phone numbers and a signing key. An existing
// directory's mode is the operator's to change. It changes nothing.
func inspectDataDir(dir string, log *slog.Logger) error {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("PHONES_DATA_DIR: %w", err)
	case !info.IsDir():
		return fmt.Errorf("PHONES_DATA_DIR: %s is not a directory", dir)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		log.Warn("the data directory is open to other users, and its files hold phone numbers: chmod 700 it",
			"dir", dir, "mode", fmt.Sprintf("%#o", perm))
	}
	return nil
}

// createDataDir creates the data directory with mode 0700, whatever the
// umask, unless it exists (inspectDataDir judges an existing one).
func createDataDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("PHONES_DATA_DIR: %w", err)
	}
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("PHONES_DATA_DIR: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("PHONES_DATA_DIR: %w", err)
	}
	return nil
}
