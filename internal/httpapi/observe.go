package httpapi

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// exchange is one request and its answer as the access log sees them.
type exchange struct {
	http.ResponseWriter
	status int
	start  time.Time
	cid    string
	route  string
	tenant string
	// operation names the request's operation for metrics: the contract's,
	// an operational endpoint's, or "unmatched".
	operation string
	traceID   string     // the W3C trace the request belongs to; "" if none
	span      trace.Span // the request's server span; nil untraced
	// failMsg is the body of a 500 for the request's operation.
	failMsg string
	// writeWithin bounds how long the answer may take to be written once
	// it begins; 0: only the server's write timeout.
	writeWithin time.Duration
}

// newExchange gives a request its correlation ID (the x-cid header when it
// is 1-128 printable ASCII characters, else a new UUID) and echoes it.
func newExchange(w http.ResponseWriter, r *http.Request) *exchange {
	x := &exchange{ResponseWriter: w, start: time.Now(), cid: correlationID(r.Header), route: "unmatched", operation: "unmatched", failMsg: msgInternal}
	w.Header()["X-Cid"] = []string{x.cid} // Set's key, canonical, without canonicalizing it per request
	return x
}

// finish turns a panic into a 500 and writes the request's log line.
func (s *Server) finish(x *exchange, r *http.Request) {
	if v := recover(); v != nil {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.log.ErrorContext(r.Context(), "panic serving request", "panic", fmt.Sprint(v), "cid", x.cid)
		if x.status == 0 {
			writeInternal(x)
		}
	}
	now := time.Now()
	took := now.Sub(x.start)
	s.observer.Answered(x.operation, s.methodLabel(r.Method), x.status, took)
	if x.span != nil {
		x.span.SetAttributes(attribute.Int("http.response.status_code", x.status))
		if x.status >= 500 {
			x.span.SetStatus(codes.Error, "")
		}
		x.span.End()
	}
	s.logRequest(r, x, now, took)
}

// logRequest writes the request's log line. It hands the record to the
// handler itself, as Logger.LogAttrs would, but without the caller's
// program counter, which the log does not show and which cost a stack walk
// on every request.
func (s *Server) logRequest(r *http.Request, x *exchange, now time.Time, took time.Duration) {
	ctx, h := r.Context(), s.requestLog
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	rec := slog.NewRecord(now, slog.LevelInfo, "request", 0)
	rec.AddAttrs(
		slog.String("method", r.Method),
		slog.String("route", x.route),
		slog.Int("status", x.status),
		slog.Float64("duration_ms", float64(took.Microseconds())/1000),
		slog.String("cid", x.cid),
		slog.String("tenant", x.tenant),
	)
	if x.traceID != "" {
		rec.AddAttrs(slog.String("trace_id", x.traceID))
	}
	_ = h.Handle(ctx, rec)
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

// WriteHeader records the status for the log, and starts the answer's
// write deadline: a client that stops reading its answers (a full receive
// window) then fails the write within writeWithin, which ends the request
// and closes its connection, instead of holding the places it took until
// the server's write timeout.
func (x *exchange) WriteHeader(status int) {
	if x.status == 0 {
		x.status = status
		if x.writeWithin > 0 {
			_ = http.NewResponseController(x.ResponseWriter).SetWriteDeadline(time.Now().Add(x.writeWithin))
		}
	}
	x.ResponseWriter.WriteHeader(status)
}

func (x *exchange) Write(b []byte) (int, error) {
	if x.status == 0 {
		x.WriteHeader(http.StatusOK)
	}
	return x.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the connection's own writer.
func (x *exchange) Unwrap() http.ResponseWriter { return x.ResponseWriter }
