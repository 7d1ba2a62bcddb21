package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"time"
)

// requestTimeout is the client's patience: a request unanswered after it
// is an unknown, as it would be for a real client.
const requestTimeout = 3 * time.Second

// client sends the checker's API requests over keep-alive connections.
// The load's creates and updates go through it rather than the public
// client (github.com/phonesd/phonesd/api), which the listing of what
// survived uses: the ledger needs the exact bytes sent (invalid bodies,
// retries of the same request under one Idempotency-Key), the moment the
// request was fully written, and every answer as it came, undocumented
// statuses and broken-off bodies included, which a typed client cannot
// send or return.
type client struct {
	hc *http.Client
}

// newClient returns a client keeping up to conns connections per replica.
func newClient(conns int) *client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
	}
	return &client{hc: &http.Client{Transport: tr, Timeout: requestTimeout}}
}

// close drops the idle connections.
func (c *client) close() { c.hc.CloseIdleConnections() }

// answer is what a request got: a status and body, or a transport error.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
	start  time.Time
	wrote  time.Time // when the request was fully written; zero if never
	end    time.Time
}

// do sends one request with a bearer token and the given headers.
func (c *client) do(method, url, token string, headers map[string]string, body []byte) answer {
	a := answer{start: time.Now()}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			mu.Lock()
			a.wrote = time.Now()
			mu.Unlock()
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, rd)
	if err != nil {
		a.err, a.end = err, time.Now()
		return a
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err == nil {
		a.body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		a.status, a.header = resp.StatusCode, resp.Header
	}
	a.end = time.Now()
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		// A response whose body broke off is no answer either.
		a.err, a.status = err, 0
	}
	return a
}

// attempt returns what the answer tells the ledger; a 200 of Create phone
// carries the phone's id.
func (a answer) attempt() attempt {
	at := attempt{Status: a.status, Class: classify(a.status, a.err)}
	if a.err != nil {
		at.Err = shortError(a.err)
		return at
	}
	var body struct {
		ID      int64  `json:"id"`
		Message string `json:"message"`
	}
	if json.Unmarshal(a.body, &body) == nil {
		at.ID, at.Message = body.ID, body.Message
	}
	return at
}

// shortError names a transport error by its kind, without the URL.
func shortError(err error) string {
	var ne net.Error
	s := err.Error()
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "connection reset"):
		return "connection reset"
	case strings.Contains(s, "EOF"):
		return "EOF"
	case strings.Contains(s, "broken pipe"):
		return "broken pipe"
	}
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// etagVersion reads a strong ETag "n" as a version; 0 when it is not one.
func etagVersion(h http.Header) int64 {
	v := strings.Trim(h.Get("ETag"), `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
