package main

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// At shutdown, idle keep-alive connections are not closed until requests
// have stopped arriving for idleQuiet, or for idleGrace at most. Closing
// an idle connection drops, unread and unanswered, a request its client
// has already written on it; until then, such a request is read and gets
// the draining 503, with Retry-After and Connection: close, which tells
// the client for sure that nothing was done. The quiet test keeps a stop
// with no traffic short.
const (
	idleQuiet = 100 * time.Millisecond
	idleGrace = time.Second
)

// requestActivity records when a connection of the API's server last began
// or finished a request: while that keeps happening, clients are writing
// requests on their connections.
type requestActivity struct {
	last atomic.Int64 // Unix nanoseconds
}

// track is the server's ConnState hook.
func (a *requestActivity) track(_ net.Conn, state http.ConnState) {
	if state == http.StateActive || state == http.StateIdle {
		a.last.Store(time.Now().UnixNano())
	}
}

// waitQuiet returns once no request has begun or finished for quiet, or
// once grace has passed, whichever comes first.
func (a *requestActivity) waitQuiet(quiet, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for {
		wait := quiet - time.Since(time.Unix(0, a.last.Load()))
		wait = min(wait, time.Until(deadline))
		if wait <= 0 {
			return
		}
		time.Sleep(wait)
	}
}
