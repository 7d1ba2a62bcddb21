package faultproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	line, err := bufio.NewReader(c).ReadString('\n')
	return line, err
}

func TestProxyModes(t *testing.T) {
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "one", time.Second); err != nil || got != "one\n" {
		t.Fatalf("pass: got %q, %v; want one", got, err)
	}

	p.Set(Blackhole)
	if got, err := roundTrip(c, "two", 200*time.Millisecond); err == nil {
		t.Fatalf("blackhole: got %q; want a timeout", got)
	}
	p.Set(Pass)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after blackhole: got %q, %v; want the held message", got, err)
	}

	p.Set(Cut)
	if _, err := roundTrip(c, "three", time.Second); err == nil {
		t.Fatal("cut: the open connection still works")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if _, err := roundTrip(c2, "four", time.Second); err == nil {
			t.Fatal("cut: a new connection works")
		}
		c2.Close()
	}
	p.Set(Pass)
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, "five", time.Second); err != nil || got != "five\n" {
		t.Fatalf("restored: got %q, %v; want five", got, err)
	}
}
