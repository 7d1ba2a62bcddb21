package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFileName is the file phonesd locks in each directory it keeps state
// in, and writes its pid and host into for whoever finds it locked.
const lockFileName = "phonesd.lock"

// stateDir is a directory whose files one process at a time may write,
// and the variable that names it.
type stateDir struct {
	variable string
	dir      string
}

// stateDirs are the directories whose files only one phonesd may write:
// the data directory, and those of the SQLite database and the events file
// where they lie elsewhere. Two processes on one SQLite database deliver
// its outbox twice; on one events file, each cuts back at open what it
// takes for a torn line, which may be a line the other is writing.
func (c config) stateDirs() []stateDir {
	dirs := []stateDir{{"PHONES_DATA_DIR", c.dataDir}}
	add := func(variable, path string) {
		if path == "" {
			return
		}
		dir := filepath.Dir(path)
		for _, d := range dirs {
			if d.dir == dir {
				return
			}
		}
		dirs = append(dirs, stateDir{variable, dir})
	}
	if c.postgresURL == "" {
		add("PHONES_DATABASE_URL", c.databasePath)
	}
	add("PHONES_EVENTS_URL", c.eventsPath)
	return dirs
}

// lockStateDirs takes an exclusive lock on each of dirs, held until
// unlock or the process's end (the kernel drops it, kill -9 included),
// and records the process's pid and host in each lock file. It returns an
// error naming the variable, the directory and the holder when another
// process holds one; it takes none then.
func lockStateDirs(dirs []stateDir, log *slog.Logger) (unlock func(), err error) {
	var held []*os.File
	unlock = func() {
		for _, f := range held {
			f.Close()
		}
	}
	for _, d := range dirs {
		f, err := lockDir(d.dir)
		if errors.Is(err, errors.ErrUnsupported) {
			log.Warn("this system has no flock: nothing stops a second phonesd on the same directory", "dir", d.dir)
			continue
		}
		if err != nil {
			unlock()
			return nil, fmt.Errorf("%s: %w", d.variable, err)
		}
		held = append(held, f)
	}
	return unlock, nil
}

// lockDir locks dir's lock file and writes the holder into it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	locked, err := tryLock(f)
	if err != nil {
		f.Close()
		if errors.Is(err, errors.ErrUnsupported) {
			return nil, err
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !locked {
		holder := lockHolder(f)
		f.Close()
		return nil, fmt.Errorf("%s is in use by another phonesd (%s): one process per directory; stop it first, or give this one a directory of its own", dir, holder)
	}
	// Should this fail, the lock still holds; only its holder's name is
	// lost to the next process that finds it taken.
	host, _ := os.Hostname()
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(fmt.Appendf(nil, "%d %s\n", os.Getpid(), host), 0)
	}
	return f, nil
}

// lockHolder describes the process that holds the lock of f, as it wrote
// itself there: its pid and host, or that they are unknown (it has not
// written them yet, or wrote them in a format of another version).
func lockHolder(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	pid, host, _ := strings.Cut(strings.TrimSpace(string(b[:n])), " ")
	if _, err := strconv.Atoi(pid); err != nil {
		return "pid unknown"
	}
	if host == "" {
		return "pid " + pid
	}
	return "pid " + pid + " on host " + host
}
