//go:build unix

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestUnreadAnswersFreeTheirPlaces: two connections with a 2 KiB receive
// buffer pipeline lists of 500 phones and read nothing. Once the kernel's
// buffers are full, phonesd's write of an answer stalls while it holds one
// of the tenant's two places, and the tenant is answered 429. Within
// PHONES_BODY_TIMEOUT of the answer's start the write fails, the
// connection is closed and the place is free: the tenant is at 429 for
// about that long, not for the server's 30 s write timeout.
func TestUnreadAnswersFreeTheirPlaces(t *testing.T) {
	const bodyTimeout = time.Second
	s := start(t, map[string]string{"PHONES_MAX_IN_FLIGHT_PER_TENANT": "2", "PHONES_BODY_TIMEOUT": bodyTimeout.String()})
	var wg sync.WaitGroup
	for w := range 2 { // the tenant's two places
		wg.Go(func() {
			for i := range 250 {
				if r := s.create(1, fmt.Sprintf(`{"number": "6%03d%04d", "type": "MOBILE", "extension": "x"}`, w, i)); r.status != http.StatusOK {
					t.Errorf("create: status %d %s", r.status, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// probe is the tenant's state: its place is brief, so that it rarely
	// meets a pipelined request, which it would refuse 429.
	probe := func() response {
		return s.do(http.MethodGet, "/accounts/v1/accounts/1/phones?limit=1", "", bearer(s.token))
	}
	if r := probe(); r.status != http.StatusOK {
		t.Fatalf("the tenant before the unread answers: status %d %s; want 200", r.status, r.body)
	}

	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	// Enough lists to fill the kernel's buffers (some 2 MiB on loopback)
	// even when the probe has a few of them refused.
	list := "GET /accounts/v1/accounts/1/phones?limit=500 HTTP/1.1\r\nHost: phonesd\r\nAuthorization: Bearer " + s.token + "\r\n\r\n"
	for range 2 {
		conn, err := dialer.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		go func() { _, _ = io.WriteString(conn, strings.Repeat(list, 400)) }()
	}

	// The tenant is at 429 while both places are taken, by lists being
	// served or by stalled answers; once the stalled answers' connections
	// are closed it is answered 200 for good. Before that, both
	// connections hold their places without a pause: a second of 200s
	// means both places are free.
	began := time.Now()
	busy := false
	var calm time.Time // when the current run of 200s began; zero in a 429
	for !busy || calm.IsZero() || time.Since(calm) < time.Second {
		switch r := probe(); r.status {
		case http.StatusTooManyRequests:
			busy, calm = true, time.Time{}
		case http.StatusOK:
			if calm.IsZero() {
				calm = time.Now()
			}
		default:
			t.Fatalf("the tenant: status %d %s; want 200 or 429", r.status, r.body)
		}
		// The body timeout, the lists served before the kernel's buffers
		// filled, and a busy machine, but far below the 30 s write timeout.
		if time.Since(began) > 15*time.Second {
			t.Fatalf("the tenant still answered 429 (seen: %v) %v after the unread answers began; want free within about the %v body timeout", busy, time.Since(began), bodyTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the tenant answered 429 until %v after the unread answers began", calm.Sub(began))
}
