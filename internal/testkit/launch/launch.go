// Package launch gives phonesd's own tools (the benchmark and the fault
// checker) what they need to run phonesd as a process of theirs: its
// binary, a free loopback address, one supervisor of the process (start,
// wait until ready, restart, kill, stop) and the end of its log for an
// error.
package launch

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

const (
	// ReadyTimeout bounds the wait for /readyz after a start: migrations, a
	// first open of a large preloaded database, and recovery after a kill
	// take a while.
	ReadyTimeout = 60 * time.Second
	// StopTimeout is how long phonesd may take to exit after SIGTERM (its
	// own budgets are 15 s to drain and 20 s to flush) before it is killed.
	StopTimeout = 45 * time.Second
)

// Build builds phonesd with tags into dir and returns the binary's path. It
// builds without the race detector whatever the caller was built with: the
// tools measure latency and kill processes. It must run inside the phonesd
// module.
func Build(ctx context.Context, dir string, tags ...string) (string, error) {
	return BuildFrom(ctx, "", dir, tags...)
}

// BuildFrom is Build of the phonesd module checked out in src ("" for the
// one the caller runs in), for comparing two versions.
func BuildFrom(ctx context.Context, src, dir string, tags ...string) (string, error) {
	return BuildPackage(ctx, src, dir, "github.com/phonesd/phonesd/cmd/phonesd", tags...)
}

// BuildPackage is Build of another command of the module, pkg, named by its
// import path; the binary takes the last element of the path for its name.
func BuildPackage(ctx context.Context, src, dir, pkg string, tags ...string) (string, error) {
	bin := filepath.Join(dir, path.Base(pkg))
	args := []string{"build"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, "-o", bin, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s (run inside the phonesd module): %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// FreeAddr returns a loopback address nothing listens on right now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// LogTail returns the last n lines of the log at path, introduced by its
// path, for an error message.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "last lines of " + path + ":\n" + string(bytes.Join(lines, []byte("\n")))
}
