package main

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
	"syscall"
	"time"

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
