package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a PostgreSQL server of a test's or tool's own, initdb'd in a
// new temporary directory and listening on a free loopback port, so that it
// can be crashed, restarted, replicated and promoted without touching any
// server it did not start. Its tools run as the postgres user when the
// caller is root, which initdb refuses.
type Cluster struct {
	// Port is the loopback port the server listens on.
	Port int
	// Name is the server's cluster_name: what a primary's
	// synchronous_standby_names names a standby by.
	Name string

	bin      string   // the directory of initdb, pg_ctl and pg_basebackup
	base     string   // the temporary directory: data, socket and log
	asUser   string   // run the tools as this user; empty: as the caller
	settings []string // name=value, passed as -c at every start
	killed   bool
}

// ClusterTools returns the directory of the newest installed PostgreSQL
// server tools (initdb, pg_ctl, pg_basebackup): on PATH, or under
// /usr/lib/postgresql/*/bin. It returns an error when there is none.
func ClusterTools() (string, error) {
	have := func(dir string) bool {
		for _, tool := range []string{"initdb", "pg_ctl", "pg_basebackup"} {
			if _, err := os.Stat(filepath.Join(dir, tool)); err != nil {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("initdb"); err == nil && have(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if have(d) {
			return d, nil
		}
	}
	return "", errors.New("no initdb, pg_ctl and pg_basebackup on PATH nor under /usr/lib/postgresql/*/bin")
}

// NewCluster starts a cluster for t, with settings (name=value) on top of
// the durability settings phonesd relies on, and stops it when t ends. It
// skips t when PHONES_TEST_DATABASE_URL is unset, like every PostgreSQL
// test, or when the server tools are not installed.
func NewCluster(t testing.TB, name string, settings ...string) *Cluster {
	t.Helper()
	if os.Getenv(EnvVar) == "" {
		t.Skip(skipReason)
	}
	if _, err := ClusterTools(); err != nil {
		t.Skipf("PostgreSQL cluster tests skipped: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, name, settings...)
	if err != nil {
		t.Fatalf("start a private PostgreSQL cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return c
}

// StartCluster initdbs a cluster named name and starts it, with settings
// (name=value) on top of fsync=on and synchronous_commit=on, the defaults
// phonesd relies on. It returns an error when the tools are missing or
// the server does not start.
func StartCluster(ctx context.Context, name string, settings ...string) (_ *Cluster, err error) {
	c, err := newCluster(name, settings)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(c.base)
		}
	}()
	if out, err := c.tool(ctx, "initdb", "-D", c.dataDir(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// newCluster prepares an empty base directory, owned by the user the tools
// run as, and picks a free port.
func newCluster(name string, settings []string) (*Cluster, error) {
	bin, err := ClusterTools()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, bin: bin, settings: settings}
	if os.Geteuid() == 0 {
		c.asUser = "postgres"
	}
	// The system's temporary directory, which the postgres user can reach,
	// unlike a test's own temporary directory under root's.
	if c.base, err = os.MkdirTemp("", "phonesd-postgres-"); err != nil {
		return nil, err
	}
	if c.asUser != "" {
		u, err := user.Lookup(c.asUser)
		if err != nil {
			os.RemoveAll(c.base)
			return nil, fmt.Errorf("initdb refuses root, and there is no %s user: %w", c.asUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.base, uid, gid); err != nil {
			os.RemoveAll(c.base)
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(c.base)
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	c.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return c, nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.base, "data") }

// LogPath is the server's log file.
func (c *Cluster) LogPath() string { return filepath.Join(c.base, "postgres.log") }

// ctlArgs are pg_ctl's arguments for action, the server's options included.
func (c *Cluster) ctlArgs(action string, more ...string) []string {
	opts := []string{
		"-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + c.base,
		"-c", "max_connections=100",
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
	}
	if c.Name != "" {
		opts = append(opts, "-c", "cluster_name="+c.Name)
	}
	for _, s := range c.settings {
		opts = append(opts, "-c", s)
	}
	args := []string{action, "-D", c.dataDir(), "-w", "-t", "60", "-l", c.LogPath(), "-o", strings.Join(opts, " ")}
	return append(args, more...)
}

// tool runs one of the server's tools, as the postgres user when needed.
func (c *Cluster) tool(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	if out, err := c.tool(ctx, "pg_ctl", c.ctlArgs("start")...); err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s", err, out)
	}
	c.killed = false
	return nil
}

// AdminURL is the URL of the cluster's postgres database.
func (c *Cluster) AdminURL() string {
	return c.URL("postgres")
}

// URL is the URL of the database name on this cluster.
func (c *Cluster) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, name)
}

// CreateDatabase creates the database name and returns its URL. On a
// primary that names a synchronous standby, it waits, as every commit
// does, until that standby streams.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quote(name)); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return c.URL(name), nil
}

// RestartImmediate stops the server without a checkpoint, as a crash does
// (every connection reset, WAL replayed at the start), and starts it again.
// It returns how long the server was away.
func (c *Cluster) RestartImmediate(ctx context.Context) (time.Duration, error) {
	began := time.Now()
	if out, err := c.tool(ctx, "pg_ctl", c.ctlArgs("restart", "-m", "immediate")...); err != nil {
		return time.Since(began), fmt.Errorf("pg_ctl restart -m immediate: %w\n%s", err, out)
	}
	return time.Since(began), nil
}

// StartStandby makes a streaming standby of c named name: a base backup
// taken with pg_basebackup -R (which writes primary_conninfo and
// standby.signal), started on a port of its own with settings on top. It
// is a synchronous standby when c's synchronous_standby_names names it.
func (c *Cluster) StartStandby(ctx context.Context, name string, settings ...string) (_ *Cluster, err error) {
	s, err := newCluster(name, settings)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(s.base)
		}
	}()
	if out, err := s.tool(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-D", s.dataDir(), "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
		return nil, fmt.Errorf("pg_basebackup: %w\n%s", err, out)
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// NewStandby starts a standby of c for t, as StartStandby does, waits
// until it streams in the sync_state want (sync or async), and stops it
// when t ends.
func (c *Cluster) NewStandby(t testing.TB, name, want string, settings ...string) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := c.StartStandby(ctx, name, settings...)
	if err != nil {
		t.Fatalf("start a standby: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	if err := c.WaitStreaming(ctx, name, want); err != nil {
		t.Fatal(err)
	}
	return s
}

// WaitStreaming waits until the standby named name streams from c, in the
// sync_state want (sync or async), so that what c commits next reaches it.
func (c *Cluster) WaitStreaming(ctx context.Context, name, want string) error {
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		return fmt.Errorf("wait for standby %s: %w", name, err)
	}
	defer conn.Close(ctx)
	for {
		var state string
		err := conn.QueryRow(ctx, `SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`, name).Scan(&state)
		if err == nil && state == want {
			return nil
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("wait for standby %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("standby %s not streaming as %s: %w", name, want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Promote turns a standby into a primary, as an operator's failover tool
// does (pg_ctl promote), and returns once it accepts writes.
func (c *Cluster) Promote(ctx context.Context) error {
	if out, err := c.tool(ctx, "pg_ctl", "promote", "-D", c.dataDir(), "-w", "-t", "60"); err != nil {
		return fmt.Errorf("pg_ctl promote: %w\n%s", err, out)
	}
	return nil
}

// Kill kills the server and every process of it with SIGKILL at once, as
// the loss of its machine would: nothing is flushed, no client is told.
// pg_ctl starts the postmaster as the leader of a process group of its
// own, which its backends, WAL writer and WAL sender share.
func (c *Cluster) Kill() error {
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("kill: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 1 {
		return fmt.Errorf("kill: postmaster.pid starts with %q", first)
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill process group %d: %w", pid, err)
	}
	c.killed = true
	// Gone once signal 0 finds no process; a zombie, reaped by init,
	// still answers, so the listening port is the better witness.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 100*time.Millisecond)
		if err != nil {
			return nil
		}
		conn.Close()
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("kill: port %d still accepts connections 10s after SIGKILL", c.Port)
}

// Stop stops the server, unless it was killed, and removes its directory.
func (c *Cluster) Stop() error {
	if !c.killed {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := c.tool(ctx, "pg_ctl", "stop", "-D", c.dataDir(), "-m", "fast", "-w"); err != nil {
			return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
		}
	}
	return os.RemoveAll(c.base)
}
