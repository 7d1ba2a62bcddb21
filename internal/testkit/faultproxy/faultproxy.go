// Package faultproxy is a TCP proxy that can cut or blackhole the link to its
// target on demand: how tests and the checker take a database or a broker
// away from phonesd without touching the shared server behind it. In front
// of PostgreSQL it can also lose the server's reply to a COMMIT.
package faultproxy

import (
	"fmt"
	"net"
	"sync"
)

// Mode is what the proxy does with traffic.
type Mode int

// The modes of a Proxy.
const (
	// Pass forwards traffic both ways.
	Pass Mode = iota
	// Cut closes every connection and refuses new ones, as a crashed
	// server or a reset network does.
	Cut
	// Blackhole accepts connections but forwards nothing either way, as a
	// partitioned network does: peers wait until their own timeouts.
	Blackhole
)

// Proxy listens on a loopback port and forwards to a target address.
type Proxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	mode  Mode
	conns map[net.Conn]struct{}
	wake  chan struct{} // closed and replaced when the mode changes
	done  chan struct{}
	wg    sync.WaitGroup

	// postgres is set by StartPostgres: the server's messages are read.
	postgres    bool
	loseCommits bool
	loseMinRows int
	commitsLost int
}

// Start listens on 127.0.0.1 on a free port and forwards to target.
func Start(target string) (*Proxy, error) {
	return start(target, false)
}

func start(target string, postgres bool) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}, wake: make(chan struct{}), done: make(chan struct{}), postgres: postgres}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients should dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set switches the mode. Cut closes the open connections at once.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	close(p.wake)
	p.wake = make(chan struct{})
	if m == Cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	close(p.done)
	err := p.ln.Close()
	p.Set(Cut)
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode != Cut {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if mode == Cut {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects c to the target once traffic may pass, then copies both ways.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.forget(client)
	if !p.waitPass() {
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.track(server)
	defer p.forget(server)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(server, client) }()
	go func() {
		defer wg.Done()
		if p.postgres {
			p.copyPostgres(client, server)
		} else {
			p.copy(client, server)
		}
	}()
	wg.Wait()
}

// copy forwards src to dst chunk by chunk, holding each chunk while the
// proxy blackholes, and closes both ends when either side ends.
func (p *Proxy) copy(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitPass() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitPass blocks while the proxy blackholes; it reports false once the
// link is cut or the proxy closed.
func (p *Proxy) waitPass() bool {
	for {
		p.mu.Lock()
		mode, wake := p.mode, p.wake
		p.mu.Unlock()
		switch mode {
		case Pass:
			return true
		case Cut:
			return false
		}
		select {
		case <-wake:
		case <-p.done:
			return false
		}
	}
}

func (p *Proxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = struct{}{}
	if p.mode == Cut {
		c.Close()
	}
}

func (p *Proxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}
