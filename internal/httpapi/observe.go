package httpapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// requestInfo is what the access log learns while a request runs.
type requestInfo struct {
	cid    string
	route  string
	tenant string
	// failMsg is the body of a 500 for the request's operation.
	failMsg string
	// fingerprint digests a request sent with an Idempotency-Key: its
	// path, x-customer-id and body, as the gate read them.
	fingerprint []byte
}

type requestInfoKey struct{}

// routeOf returns the request's info; a zero value outside observe.
func routeOf(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// observe gives each request its correlation ID (the x-cid header when it is
// 1-128 printable ASCII characters, else a new UUID), echoes it, turns a
// panic into a 500, and writes one log line per request.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{cid: correlationID(r.Header), route: "unmatched", failMsg: msgInternal}
		w.Header().Set("x-cid", info.cid)
		rw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic serving request", "panic", fmt.Sprint(v), "cid", info.cid)
				if rw.status == 0 {
					writeMessage(rw, http.StatusInternalServerError, info.failMsg)
				}
			}
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", r.Method),
				slog.String("route", info.route),
				slog.Int("status", rw.status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
				slog.String("cid", info.cid),
				slog.String("tenant", info.tenant),
			)
		}()
		next.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))
	})
}

func correlationID(h http.Header) string {
	if vals := h.Values("X-Cid"); len(vals) == 1 && validCID(vals[0]) {
		return vals[0]
	}
	return uuid.Must(uuid.NewRandomFromReader(rand.Reader)).String()
}

func validCID(s string) bool {
	if len(s) < 1 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// statusWriter records the status for the log and states JSON's media type
// without the charset parameter ogen adds: RFC 8259 defines none, since JSON
// is always UTF-8.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
		h := w.ResponseWriter.Header()
		if h.Get("Content-Type") == "application/json; charset=utf-8" {
			h.Set("Content-Type", "application/json")
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
