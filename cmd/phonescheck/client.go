package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/phonesd/phonesd/api"
)

// requestTimeout is the client's patience: a request unanswered after it
// is an unknown, as it would be for a real client.
const requestTimeout = 3 * time.Second

// client sends the checker's API requests through the public client
// (github.com/phonesd/phonesd/api), as an integrator would, over
// keep-alive connections. The ledger judges each answer as it came off the
// wire, undocumented statuses and broken-off bodies included, so every
// call also records the status, headers and body it got, and the moment
// its request was fully written.
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

// api returns a public client of phonesd at base sending token, over c's
// connections, for calls whose typed answers are all the checker needs.
func (c *client) api(base, token string) (*api.Client, error) {
	return api.NewClient(base, api.Token(token), api.WithClient(c.hc))
}

// answer is what a request got: a status and body, or a transport error.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
	// contract is the public client's error for an answer that came whole
	// but is not one the contract documents for its operation.
	contract error
	start    time.Time
	wrote    time.Time // when the request was fully written; zero if never
	end      time.Time
}

// call runs send, which makes one request with the public client it is
// given, against base with token, and returns the answer as it came.
func (c *client) call(base, token string, send func(context.Context, *api.Client) error) answer {
	a := answer{start: time.Now()}
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			mu.Lock()
			a.wrote = time.Now()
			mu.Unlock()
		}
	}}
	w := &wire{hc: c.hc}
	ac, err := api.NewClient(base, api.Token(token), api.WithClient(w))
	if err == nil {
		err = send(httptrace.WithClientTrace(context.Background(), trace), ac)
	}
	a.end = time.Now()
	mu.Lock()
	defer mu.Unlock()
	a.status, a.header, a.body = w.status, w.header, w.body
	switch {
	case w.err != nil:
		// No answer, or one whose body broke off: no answer either.
		a.err, a.status = w.err, 0
	case err != nil && w.status == 0:
		a.err = fmt.Errorf("not sent: %w", err)
	case err != nil:
		a.contract = err
	}
	return a
}

// wire is the public client's transport for one call: it sends through hc
// and keeps the answer's status, headers and whole body before the client
// decodes it.
type wire struct {
	hc     *http.Client
	status int
	header http.Header
	body   []byte
	err    error
}

// Do sends req and reads the whole answer.
func (w *wire) Do(req *http.Request) (*http.Response, error) {
	resp, err := w.hc.Do(req)
	if err != nil {
		w.err = err
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		w.err = err
		return nil, err
	}
	w.status, w.header, w.body = resp.StatusCode, resp.Header, body
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// attempt returns what the answer tells the ledger; a 200 of Create phone
// carries the phone's id.
func (a answer) attempt() attempt {
	at := attempt{Status: a.status, Class: classify(a.status, a.err)}
	if a.err != nil {
		at.Err = shortError(a.err)
		return at
	}
	if a.contract != nil {
		at.Contract = a.contract.Error()
	}
	// Read from the bytes, not the decoded answer, so that an answer off
	// the contract still says what it can.
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
