package natstest

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// Impostor listens where a test says a NATS server is, greets each client
// as a server offering no TLS would, and records the first line each sends
// back (a CONNECT, with its credentials), so that a test can show that
// nothing reached an address it must not, or what did. A client that
// requires TLS reads the greeting and leaves without a word.
type Impostor struct {
	ln net.Listener

	mu       sync.Mutex
	received []string
	// heard is closed when a client's first line is recorded.
	heard chan struct{}
	once  sync.Once
}

// impostorGreeting is the INFO a nats-server sends first, without TLS.
const impostorGreeting = `INFO {"server_id":"IMPOSTOR","server_name":"impostor","version":"2.10.0","proto":1,"host":"0.0.0.0","port":4222,"max_payload":1048576,"tls_required":false,"tls_available":false}` + "\r\n"

// StartImpostor listens on addr (host:port, port 0 for any) until Close.
func StartImpostor(addr string) (*Impostor, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &Impostor{ln: ln, heard: make(chan struct{})}
	go m.serve()
	return m, nil
}

func (m *Impostor) serve() {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte(impostorGreeting)); err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			if line == "" {
				return
			}
			m.mu.Lock()
			m.received = append(m.received, line)
			m.mu.Unlock()
			m.once.Do(func() { close(m.heard) })
		}()
	}
}

// Addr is the address it listens on, host:port.
func (m *Impostor) Addr() string { return m.ln.Addr().String() }

// Heard is closed when a client has sent a line.
func (m *Impostor) Heard() <-chan struct{} { return m.heard }

// Received returns the first line of each client so far.
func (m *Impostor) Received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.received...)
}

// Close stops listening.
func (m *Impostor) Close() error { return m.ln.Close() }
