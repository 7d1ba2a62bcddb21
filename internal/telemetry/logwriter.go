package telemetry

import (
	"io"
	"sync"
	"time"
)

// LogWriter writes the log to an io.Writer, the request lines in the
// background. Under load every request writes a line, and a write system
// call for each, made behind the log handler's lock, cost a request more
// than the rest of its line did. A line written through Deferred is
// copied into a buffer, which goes out in one write every interval, or at
// once when it holds logFlushBytes; a line written through Write (starts,
// warnings, errors) goes out at once, after what the buffer holds, so the
// log keeps the order lines were written in.
//
// A line is never split: each write is one whole record. A crash loses at
// most the last interval of request lines; Close writes out what is left.
// Safe for concurrent use.
type LogWriter struct {
	out io.Writer

	mu  sync.Mutex
	buf []byte

	// writing orders the writes to out, and holds back writers once the
	// buffer is full, as a slow out would without the buffer.
	writing sync.Mutex
	spare   []byte

	stop, done chan struct{}
	closeOnce  sync.Once
}

// logFlushBytes is how full the buffer grows before a line written to it
// writes it out rather than wait for the interval.
const logFlushBytes = 64 << 10

// NewLogWriter starts writing to out what is written to it, the deferred
// lines every interval; Close stops it.
func NewLogWriter(out io.Writer, interval time.Duration) *LogWriter {
	w := &LogWriter{out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop(interval)
	return w
}

func (w *LogWriter) loop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.flush(nil)
		}
	}
}

// Write writes p, one log record, at once, after the deferred lines
// waiting. A failing out loses lines, as it would without the buffer; the
// error is not the caller's to handle.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.flush(p)
	return len(p), nil
}

// Deferred returns a writer whose records go out within the interval.
func (w *LogWriter) Deferred() io.Writer { return deferred{w} }

type deferred struct{ w *LogWriter }

func (d deferred) Write(p []byte) (int, error) {
	w := d.w
	w.mu.Lock()
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= logFlushBytes
	w.mu.Unlock()
	if full {
		w.flush(nil)
	}
	return len(p), nil
}

// flush writes out what the buffer holds, followed by p.
func (w *LogWriter) flush(p []byte) {
	w.writing.Lock()
	defer w.writing.Unlock()
	w.mu.Lock()
	out := w.buf
	w.buf, w.spare = w.spare[:0], nil
	w.mu.Unlock()
	out = append(out, p...)
	if len(out) > 0 {
		_, _ = w.out.Write(out)
	}
	// The two buffers take turns, so that a steady log allocates none.
	w.spare = out[:0]
}

// Close stops the background writes and writes out what is left.
func (w *LogWriter) Close() error {
	w.closeOnce.Do(func() {
		close(w.stop)
		<-w.done
	})
	w.flush(nil)
	return nil
}
