package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/phonesd/phonesd/internal/testkit/launch"
)

// Server is a nats-server with JetStream that a test or tool runs as a
// process of its own, on loopback ports and a store of its own, so that it
// can stop, kill and start it without touching any server it did not start.
// It runs Debian's nats-server binary: a kill -9 needs a separate process.
type Server struct {
	// Name is the server's name, as JetStream reports a stream's leader.
	Name string
	// Port serves clients; ClusterPort, in a cluster, the other servers.
	Port        int
	ClusterPort int

	// userInfo is "user:password@" when clients must authenticate, else "".
	userInfo string

	bin    string
	dir    string // its JetStream store
	log    string
	args   []string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// ServerBinary returns the path of nats-server: on PATH, or in /usr/sbin
// where Debian's package puts it. It returns an error when there is none.
func ServerBinary() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server", nil
	}
	return "", errors.New("no nats-server on PATH nor in /usr/sbin")
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newServer prepares a server named name with its store and log under
// dir, on a free client port; it starts nothing.
func newServer(dir, name string) (*Server, error) {
	bin, err := ServerBinary()
	if err != nil {
		return nil, err
	}
	s := &Server{Name: name, bin: bin, dir: filepath.Join(dir, name), log: filepath.Join(dir, name+".log")}
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	s.args = []string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-n", name, "-js", "-sd", s.dir, "-l", s.log}
	return s, nil
}

// StartServer starts a lone nats-server with JetStream, its store and log
// under dir, and waits until it accepts connections.
func StartServer(ctx context.Context, dir string) (*Server, error) {
	s, err := newServer(dir, "nats")
	if err != nil {
		return nil, err
	}
	return s, s.Start(ctx)
}

// URL is the server's client URL, with the cluster's credentials when it
// requires some.
func (s *Server) URL() string { return fmt.Sprintf("nats://%s127.0.0.1:%d", s.userInfo, s.Port) }

// LogPath is the server's log file.
func (s *Server) LogPath() string { return s.log }

// Start starts the server with its name, ports and store, and waits until
// it accepts connections.
func (s *Server) Start(ctx context.Context) error {
	cmd := exec.Command(s.bin, s.args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats-server %s: %w", s.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("nats-server %s exited at start; see %s", s.Name, s.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server %s not listening after 30s; see %s", s.Name, s.log)
		}
	}
}

// Stop stops the server with SIGTERM, as an operator would, and waits; it
// kills it after 30 s.
func (s *Server) Stop() error {
	return s.signal(syscall.SIGTERM, 30*time.Second)
}

// Kill kills the server with SIGKILL, as the loss of its machine would, and
// waits until it is gone.
func (s *Server) Kill() error {
	return s.signal(syscall.SIGKILL, 10*time.Second)
}

func (s *Server) signal(sig syscall.Signal, wait time.Duration) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(wait):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("nats-server %s did not stop within %s of %v; killed", s.Name, wait, sig)
	}
}

// Running reports whether the server's process has not exited.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Cluster is several nats-servers routed to each other as one JetStream
// cluster, each a process of its own.
type Cluster struct {
	Servers []*Server
}

// ClusterOptions are what a cluster's servers start with beyond the
// defaults; the zero value is a plain cluster.
type ClusterOptions struct {
	// User and Password, when set, are required of every client; the
	// servers' URLs then carry them.
	User, Password string
	// Advertise maps a server's index (from 0) to the client address it
	// advertises to clients in place of its own, as a server behind NAT
	// does: clients learn it from every server of the cluster.
	Advertise map[int]string
}

// StartCluster starts n servers named nats-1 to nats-n, each routed to the
// others, their stores and logs under dir, and waits until JetStream
// answers, which it does once the servers have elected a meta leader.
func StartCluster(ctx context.Context, dir string, n int) (*Cluster, error) {
	return StartClusterWith(ctx, dir, n, ClusterOptions{})
}

// StartClusterWith is StartCluster with o. A server that exits before the
// cluster answers, as one does when another process took the port it was
// given between freePort and its start, makes it start the cluster again,
// on other ports, twice at most.
func StartClusterWith(ctx context.Context, dir string, n int, o ClusterOptions) (*Cluster, error) {
	for try := 1; ; try++ {
		c, err := startCluster(ctx, filepath.Join(dir, "try-"+strconv.Itoa(try)), n, o)
		if !errors.Is(err, errServerExited) || try == 3 {
			return c, err
		}
	}
}

// errServerExited means a server of a cluster exited while it started.
var errServerExited = errors.New("server exited")

func startCluster(ctx context.Context, dir string, n int, o ClusterOptions) (_ *Cluster, err error) {
	c := &Cluster{}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for i := range n {
		s, err := newServer(dir, "nats-"+strconv.Itoa(i+1))
		if err != nil {
			return nil, err
		}
		if s.ClusterPort, err = freePort(); err != nil {
			return nil, err
		}
		if o.User != "" {
			s.userInfo = url.UserPassword(o.User, o.Password).String() + "@"
			s.args = append(s.args, "--user", o.User, "--pass", o.Password)
		}
		if addr, ok := o.Advertise[i]; ok {
			s.args = append(s.args, "--client_advertise", addr)
		}
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		var routes []string
		for _, other := range c.Servers {
			if other != s {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", other.ClusterPort))
			}
		}
		s.args = append(s.args, "--cluster_name", "phonesd", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", s.ClusterPort), "--routes", strings.Join(routes, ","))
	}
	for _, s := range c.Servers {
		if err := s.Start(ctx); err != nil {
			return nil, err
		}
	}
	return c, c.waitJetStream(ctx)
}

// waitJetStream waits until the cluster can place a stream on every one
// of its servers: a meta leader answers before every server has joined it,
// and a stream of as many replicas as servers is refused until then.
func (c *Cluster) waitJetStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	nc, err := nats.Connect(c.URL(), nats.Timeout(timeout))
	if err != nil {
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	probe := jetstream.StreamConfig{Name: "NATSTEST_READY", Subjects: []string{"natstest.ready"}, Storage: jetstream.MemoryStorage, Replicas: len(c.Servers)}
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.CreateStream(actx, probe)
		if err == nil {
			err = js.DeleteStream(actx, probe.Name)
		}
		acancel()
		if err == nil {
			return nil
		}
		for _, s := range c.Servers {
			if !s.Running() {
				return fmt.Errorf("%w: nats-server %s; %s", errServerExited, s.Name, launch.LogTail(s.log, 20))
			}
		}
		select {
		case <-ctx.Done():
			var logs strings.Builder
			for _, s := range c.Servers {
				fmt.Fprintf(&logs, "\nnats-server %s: %s", s.Name, launch.LogTail(s.log, 20))
			}
			return fmt.Errorf("JetStream cluster not answering: %w%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// URL is every server's client URL, separated by commas.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// Server returns the server named name, or nil.
func (c *Cluster) Server(name string) *Server {
	for _, s := range c.Servers {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// NewStream returns fresh names for t on the cluster, as New does on the
// test server, and deletes the stream, if one was created, when t ends: a
// cluster just through a kill may be too busy electing to, which the test
// notes but does not count against it.
func (c *Cluster) NewStream(t testing.TB) *Stream {
	t.Helper()
	return newOn(t, c.URL(), false)
}

// Stop stops every server that runs.
func (c *Cluster) Stop() error {
	var errs []error
	for _, s := range c.Servers {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

// NewCluster starts a cluster of n servers for t and stops it when t ends.
// It skips t when PHONES_TEST_NATS_URL is unset, like every NATS test, or
// when nats-server is not installed.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return NewClusterWith(t, n, ClusterOptions{})
}

// NewClusterWith is NewCluster with o.
func NewClusterWith(t testing.TB, n int, o ClusterOptions) *Cluster {
	t.Helper()
	serverURL(t)
	if _, err := ServerBinary(); err != nil {
		t.Skipf("NATS cluster tests skipped: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := StartClusterWith(ctx, t.TempDir(), n, o)
	if err != nil {
		t.Fatalf("start a NATS cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return c
}
