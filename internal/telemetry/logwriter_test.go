package telemetry

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// sink is an io.Writer that keeps what it is given and tells of each
// write.
type sink struct {
	mu     sync.Mutex
	got    bytes.Buffer
	writes chan int
}

func newSink() *sink { return &sink{writes: make(chan int, 1<<16)} }

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got.Write(p)
	s.writes <- len(p)
	return len(p), nil
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

// waitWrite waits for the sink's next write, failing after a deadline.
func (s *sink) waitWrite(t *testing.T, why string) {
	t.Helper()
	select {
	case <-s.writes:
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing written %s", why)
	}
}

// TestLogWriterKeepsLinesWholeAndInOrder writes lines from many
// goroutines, some deferred, some at once, and checks that each arrives
// whole and in the order its goroutine wrote it.
func TestLogWriterKeepsLinesWholeAndInOrder(t *testing.T) {
	out := newSink()
	w := NewLogWriter(out, time.Millisecond)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for n := range lines {
				to := w.Deferred()
				if n%10 == 0 {
					to = w
				}
				fmt.Fprintf(to, "{\"writer\":%d,\"line\":%d,\"pad\":%q}\n", g, n, strings.Repeat("x", n%300))
			}
		})
	}
	wg.Wait()
	w.Close()
	next := make([]int, writers)
	count := 0
	for line := range strings.Lines(out.String()) {
		var g, n int
		if _, err := fmt.Sscanf(line, "{\"writer\":%d,\"line\":%d,", &g, &n); err != nil {
			t.Fatalf("torn line %q: %v", line, err)
		}
		if want := fmt.Sprintf("{\"writer\":%d,\"line\":%d,\"pad\":%q}\n", g, n, strings.Repeat("x", n%300)); line != want {
			t.Fatalf("line %q; want %q", line, want)
		}
		if n != next[g] {
			t.Fatalf("writer %d: line %d after %d", g, n, next[g]-1)
		}
		next[g]++
		count++
	}
	if count != writers*lines {
		t.Errorf("%d lines written; want %d", count, writers*lines)
	}
}

func TestLogWriterWritesOutEveryInterval(t *testing.T) {
	out := newSink()
	w := NewLogWriter(out, 5*time.Millisecond)
	defer w.Close()
	w.Deferred().Write([]byte("one\n"))
	out.waitWrite(t, "after the interval")
	if got := out.String(); got != "one\n" {
		t.Errorf("written %q; want %q", got, "one\n")
	}
}

func TestLogWriterWritesOutAFullBufferAtOnce(t *testing.T) {
	out := newSink()
	w := NewLogWriter(out, time.Hour)
	defer w.Close()
	line := []byte(strings.Repeat("y", 1023) + "\n")
	for range logFlushBytes / len(line) {
		w.Deferred().Write(line)
	}
	out.waitWrite(t, "once the buffer was full")
	if got := len(out.String()); got != logFlushBytes {
		t.Errorf("written %d bytes; want %d", got, logFlushBytes)
	}
}

func TestLogWriterCloseWritesOutTheRest(t *testing.T) {
	out := newSink()
	w := NewLogWriter(out, time.Hour)
	w.Deferred().Write([]byte("last\n"))
	if got := out.String(); got != "" {
		t.Fatalf("written %q before the interval", got)
	}
	w.Close()
	if got := out.String(); got != "last\n" {
		t.Errorf("after Close: %q; want %q", got, "last\n")
	}
	w.Close() // a second Close does nothing
}

func TestLogWriterWritesAtOnceAfterWhatWaits(t *testing.T) {
	out := newSink()
	w := NewLogWriter(out, time.Hour)
	defer w.Close()
	w.Deferred().Write([]byte("request\n"))
	w.Write([]byte("warning\n"))
	if got, want := out.String(), "request\nwarning\n"; got != want {
		t.Errorf("written %q; want %q at once, in that order", got, want)
	}
}
