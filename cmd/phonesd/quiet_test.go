package main

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestWaitQuiet(t *testing.T) {
	const quiet, grace = 50 * time.Millisecond, 400 * time.Millisecond
	t.Run("never used", func(t *testing.T) {
		var a requestActivity
		began := time.Now()
		a.waitQuiet(quiet, grace)
		if took := time.Since(began); took >= quiet {
			t.Errorf("waited %s with no request ever; want no wait", took)
		}
	})
	t.Run("a request just finished", func(t *testing.T) {
		var a requestActivity
		a.track(nil, http.StateIdle)
		began := time.Now()
		a.waitQuiet(quiet, grace)
		if took := time.Since(began); took < quiet*9/10 || took >= grace {
			t.Errorf("waited %s after a request; want about %s", took, quiet)
		}
	})
	t.Run("requests keep coming", func(t *testing.T) {
		var a requestActivity
		a.track(nil, http.StateActive)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				a.track(nil, http.StateActive)
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		began := time.Now()
		a.waitQuiet(quiet, grace)
		took := time.Since(began)
		close(stop)
		<-done
		if took < grace*9/10 {
			t.Errorf("waited %s while requests kept coming; want the grace, %s", took, grace)
		}
	})
}

// A request a client writes on a kept-alive connection once shutdown has
// begun is read and refused with a 503 that closes the connection, not
// dropped unread with the connection.
func TestShutdownAnswersARequestOnAnIdleConnection(t *testing.T) {
	s := start(t, nil)
	addr := strings.TrimPrefix(s.base, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	list := "GET /accounts/v1/accounts/1/phones HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + s.token + "\r\n\r\n"
	exchange := func() (*http.Response, error) {
		if _, err := conn.Write([]byte(list)); err != nil {
			return nil, err
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := exchange(); err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("first request: %v, error %v; want a 200 keeping the connection", resp, err)
	}

	// Another client polls /readyz meanwhile, as a load balancer does:
	// requests keep arriving while phonesd drains.
	draining := make(chan struct{})
	stopPolling := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		hc := &http.Client{Timeout: time.Second}
		seen := false
		for {
			resp, err := hc.Get(s.base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable && !seen {
					seen = true
					close(draining)
				}
			}
			select {
			case <-stopPolling:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stopPolling); <-polled }()
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	select {
	case <-draining:
	case <-time.After(10 * time.Second):
		t.Fatal("/readyz did not fail within 10s of the stop")
	}

	resp, err := exchange()
	if err != nil {
		t.Fatalf("request on the kept-alive connection during the drain: %v; want a 503", err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close || resp.Header.Get("Retry-After") == "" {
		t.Errorf("request during the drain: status %d, close %t, Retry-After %q; want 503 closing the connection, with Retry-After", resp.StatusCode, resp.Close, resp.Header.Get("Retry-After"))
	}
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v; want nil", err)
	}
}
