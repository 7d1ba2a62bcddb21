package main

import (
	"io"
	"log/slog"
	"time"

	"github.com/phonesd/phonesd/internal/telemetry"
)

// logInterval is how often the request lines are written out (see
// telemetry.LogWriter): late enough to gather a few hundred of them into
// one write under load, soon enough that nobody reading the log waits.
const logInterval = 10 * time.Millisecond

// serviceLog is where phonesd's log goes: every line to stdout, each
// request's in the background.
type serviceLog struct {
	out      *telemetry.LogWriter
	handler  slog.Handler // written at once
	requests slog.Handler // written within logInterval
}

func openLog(stdout io.Writer, cfg config) serviceLog {
	out := telemetry.NewLogWriter(stdout, logInterval)
	return serviceLog{
		out:      out,
		handler:  newLogHandler(out, cfg.logLevel, cfg.dev()),
		requests: newLogHandler(out.Deferred(), cfg.logLevel, cfg.dev()),
	}
}

// close writes out the request lines waiting.
func (l serviceLog) close() { l.out.Close() }

// newLogHandler returns the handler of phonesd's log: JSON lines, or text in
// development mode, where a person reads it.
func newLogHandler(w io.Writer, level slog.Level, dev bool) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationAsText}
	if dev {
		return slog.NewTextHandler(w, opts)
	}
	return slog.NewJSONHandler(w, opts)
}

// durationAsText writes a duration as Go spells it ("1.5s"): the JSON
// handler would write its nanoseconds (1500000000), which a reader takes
// for seconds or milliseconds.
func durationAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
