package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"phonesd/internal/faultproxy"
	"phonesd/internal/launch"
)

// proxied returns rawURL with its host replaced by a fault proxy's address,
// and the proxy, so that a scenario can cut or blackhole the link without
// touching the server behind it.
func proxied(rawURL string) (string, *faultproxy.Proxy, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		// The URL is not quoted: it may hold a password.
		return "", nil, errors.New("not a URL with a host")
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		return "", nil, err
	}
	u.Host = p.Addr()
	return u.String(), p, nil
}

// privatePostgres is a PostgreSQL cluster the checker makes for itself in a
// temporary directory, on a port of its own, so that it can restart it with
// -m immediate (a crash, with WAL recovery at the next start) without
// touching any server it did not start.
type privatePostgres struct {
	bin  string // the directory of initdb and pg_ctl
	dir  string // the cluster's data directory
	port int
	// asUser runs the tools as this user (postgres) when the checker runs
	// as root, which initdb refuses.
	asUser string
	log    string
}

// findPostgresBin returns the directory of the newest installed initdb and
// pg_ctl: on PATH, or under /usr/lib/postgresql/*/bin.
func findPostgresBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no initdb and pg_ctl on PATH nor under /usr/lib/postgresql/*/bin")
}

// startPrivatePostgres initdbs a cluster in a new directory of the system's
// temporary directory (which the postgres user can reach, unlike the work
// directory) and starts it on a free loopback port, with the durability
// settings phonesd relies on (fsync and synchronous_commit on: the defaults).
func startPrivatePostgres(ctx context.Context) (_ *privatePostgres, err error) {
	bin, err := findPostgresBin()
	if err != nil {
		return nil, err
	}
	pg := &privatePostgres{bin: bin}
	if os.Geteuid() == 0 {
		pg.asUser = "postgres"
	}
	base, err := os.MkdirTemp("", "phonescheck-postgres-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(base)
		}
	}()
	if pg.asUser != "" {
		u, err := user.Lookup(pg.asUser)
		if err != nil {
			return nil, fmt.Errorf("initdb refuses root, and there is no %s user: %w", pg.asUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(base, uid, gid); err != nil {
			return nil, err
		}
	}
	pg.dir = filepath.Join(base, "data")
	pg.log = filepath.Join(base, "postgres.log")
	addr, err := launch.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, portText, _ := strings.Cut(addr, ":")
	pg.port, _ = strconv.Atoi(portText)
	if out, err := pg.tool(ctx, "initdb", "-D", pg.dir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if out, err := pg.tool(ctx, "pg_ctl", pg.ctlArgs("start")...); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %w\n%s", err, out)
	}
	return pg, nil
}

// ctlArgs are pg_ctl's arguments for action, the server's options included.
func (pg *privatePostgres) ctlArgs(action string, more ...string) []string {
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c max_connections=100 -c fsync=on -c synchronous_commit=on", pg.port, filepath.Dir(pg.dir))
	args := []string{action, "-D", pg.dir, "-w", "-t", "60", "-l", pg.log, "-o", opts}
	return append(args, more...)
}

// tool runs one of the cluster's tools, as the postgres user when needed.
func (pg *privatePostgres) tool(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(pg.bin, name)
	var cmd *exec.Cmd
	if pg.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", pg.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

// adminURL is the URL of the cluster's postgres database.
func (pg *privatePostgres) adminURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

// createDatabase creates the database name and returns its URL.
func (pg *privatePostgres) createDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, pg.adminURL())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, name), nil
}

// restartImmediate stops the server without a checkpoint, as a crash does
// (every connection reset, WAL replayed at the start), and starts it again.
// It returns how long the server was away.
func (pg *privatePostgres) restartImmediate(ctx context.Context) (time.Duration, error) {
	began := time.Now()
	if out, err := pg.tool(ctx, "pg_ctl", pg.ctlArgs("restart", "-m", "immediate")...); err != nil {
		return time.Since(began), fmt.Errorf("pg_ctl restart -m immediate: %w\n%s", err, out)
	}
	return time.Since(began), nil
}

// stop stops the server and removes its directory.
func (pg *privatePostgres) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := pg.tool(ctx, "pg_ctl", "stop", "-D", pg.dir, "-m", "fast", "-w")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return os.RemoveAll(filepath.Dir(pg.dir))
}

// privateNATS is a nats-server with JetStream the checker starts for itself
// on a port of its own, with its store in the work directory, so that it
// can stop and start it without touching any server it did not start.
type privateNATS struct {
	bin    string
	port   int
	dir    string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// findNATSServer returns the path of nats-server: on PATH, or /usr/sbin.
func findNATSServer() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server", nil
	}
	return "", errors.New("no nats-server on PATH nor in /usr/sbin")
}

// startPrivateNATS starts a nats-server with JetStream on a free loopback
// port, its store under dir.
func startPrivateNATS(ctx context.Context, dir string) (*privateNATS, error) {
	bin, err := findNATSServer()
	if err != nil {
		return nil, err
	}
	addr, err := launch.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, portText, _ := strings.Cut(addr, ":")
	n := &privateNATS{bin: bin, dir: filepath.Join(dir, "nats"), log: filepath.Join(dir, "nats-server.log")}
	n.port, _ = strconv.Atoi(portText)
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, err
	}
	return n, n.start(ctx)
}

// url is the server's client URL.
func (n *privateNATS) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// start starts the server on its port and store, and waits until it
// accepts connections.
func (n *privateNATS) start(ctx context.Context) error {
	n.cmd = exec.Command(n.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-js", "-sd", n.dir, "-l", n.log)
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("start nats-server: %w", err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(n.cmd, n.exited)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("nats-server exited at start; see %s", n.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server not listening after 30s; see %s", n.log)
		}
	}
}

// stop stops the server with SIGTERM, as an operator would, and waits.
func (n *privateNATS) stop() error {
	if n.cmd == nil {
		return nil
	}
	select {
	case <-n.exited:
		return nil
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		return nil
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
		return errors.New("nats-server did not stop within 30s of SIGTERM; killed")
	}
}
