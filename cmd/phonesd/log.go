package main

import (
	"io"
	"log/slog"
)

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
