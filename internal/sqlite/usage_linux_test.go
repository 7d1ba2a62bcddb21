package sqlite

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// usage is what the process has spent so far: CPU, and bytes and calls
// written; the benchmark reports them per create, since they vary far less
// than the time an fsync takes.
type usage struct {
	cpu                   time.Duration
	writeBytes, writeCall int64
}

func readUsage() (usage, bool) {
	var u usage
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return u, false
	}
	u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return u, false
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "wchar":
			u.writeBytes = n
		case "syscw":
			u.writeCall = n
		}
	}
	return u, true
}
