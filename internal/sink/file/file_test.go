package file_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/sink/file"
	"github.com/phonesd/phonesd/internal/testkit/eventtest"
)

func openSink(t *testing.T, path string) *file.Sink {
	t.Helper()
	sink, err := file.NewSink(path)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { sink.Close() })
	return sink
}

func TestFileSinkCutsTornTail(t *testing.T) {
	long := strings.Repeat("x", 100*1024)
	tests := []struct {
		name   string
		before string // file content before open; "-" for no file
		want   string // content after open
	}{
		{"no file", "-", ""},
		{"empty", "", ""},
		{"complete lines", "{\"a\":1}\n{\"b\":2}\n", "{\"a\":1}\n{\"b\":2}\n"},
		{"torn last line", "{\"a\":1}\n{\"b\":2}\n{\"c\":", "{\"a\":1}\n{\"b\":2}\n"},
		{"torn only line", "{\"c\":", ""},
		{"torn line longer than a read block", "{\"a\":1}\n" + long, "{\"a\":1}\n"},
		{"newline only a block back", "{\"a\":1}\n" + long + "\n" + long, "{\"a\":1}\n" + long + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			if tt.before != "-" {
				if err := os.WriteFile(path, []byte(tt.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			sink := openSink(t, path)
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("content after open: got %q; want %q", abbrev(string(got)), abbrev(tt.want))
			}

			// The torn event, published again, becomes a whole line.
			err = sink.Publish(context.Background(), []phone.Event{{Seq: 9, Payload: []byte(`{"c":3}`)}})
			if err != nil {
				t.Fatalf("Publish: got error %v; want nil", err)
			}
			got, err = os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.want + "{\"c\":3}\n"; string(got) != want {
				t.Errorf("content after Publish: got %q; want %q", abbrev(string(got)), abbrev(want))
			}
		})
	}
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:40] + "..." + s[len(s)-40:]
	}
	return s
}

func TestFileSinkPublish(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	sink := openSink(t, path)
	ctx := context.Background()

	if err := sink.Publish(ctx, []phone.Event{
		{Seq: 1, Payload: []byte(`{"n":1}`)},
		{Seq: 2, Payload: []byte(` {"n": 2} `)},
	}); err != nil {
		t.Fatalf("Publish: got error %v; want nil", err)
	}
	if err := sink.Publish(ctx, nil); err != nil {
		t.Fatalf("Publish(nil): got error %v; want nil", err)
	}
	err := sink.Publish(ctx, []phone.Event{
		{Seq: 3, Payload: []byte(`{"n":3}`)},
		{Seq: 4, Payload: []byte("{\"n\":\n4}")},
	})
	if err == nil {
		t.Error("Publish of a payload with a newline: got nil error; want one")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := sink.Publish(cancelled, []phone.Event{{Seq: 3, Payload: []byte(`{"n":3}`)}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with cancelled ctx: got error %v; want context.Canceled", err)
	}

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Payloads exactly as given, nothing of the rejected batches.
	if want := "{\"n\":1}\n {\"n\": 2} \n"; string(got) != want {
		t.Errorf("content: got %q; want %q", got, want)
	}
	if err := sink.Close(); err != nil {
		t.Errorf("Close: got error %v; want nil", err)
	}
}

func TestNewSinkMissingDirectory(t *testing.T) {
	_, err := file.NewSink(filepath.Join(t.TempDir(), "missing", "events.jsonl"))
	if err == nil {
		t.Fatal("NewSink: got nil error; want one")
	}
}

// event returns the event numbered seq, as the domain builds it.
func event(t *testing.T, seq int64) phone.Event {
	t.Helper()
	p := phone.Phone{ID: seq, Tenant: "tenant-a", AccountID: 1, Number: fmt.Sprintf("9000-%04d", seq),
		Type: phone.Mobile, Active: true, CountryCode: phone.DefaultCountryCode, CreatedAt: time.UnixMilli(1_800_000_000_000 + seq)}
	ev, err := phone.CreatedEvent(eventID(seq), p, phone.Audit{CID: fmt.Sprintf("cid-%d", seq), Origin: "API"})
	if err != nil {
		t.Fatal(err)
	}
	ev.Seq = seq
	return ev
}

func eventID(seq int64) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", seq) }

func TestFileSinkWritesEachEventOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	ctx := context.Background()
	evs := make([]phone.Event, 8)
	for i := range evs {
		evs[i] = event(t, int64(i+1))
	}
	payloads := func(evs []phone.Event) []string {
		var out []string
		for _, ev := range evs {
			out = append(out, string(ev.Payload))
		}
		return out
	}
	sink := openSink(t, path)
	if err := sink.Publish(ctx, evs[:3]); err != nil {
		t.Fatal(err)
	}
	// Delivered again, as after a failed mark: only e4 and e5 are new.
	if err := sink.Publish(ctx, evs[1:5]); err != nil {
		t.Fatal(err)
	}
	if got, want := eventtest.ReadFile(t, path), payloads(evs[:5]); !slices.Equal(got, want) {
		t.Fatalf("lines:\ngot  %q\nwant %q", got, want)
	}
	sink.Close()

	// A new sink on the same file, as after a crash, and a torn line.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"event_id":"` + eventID(6) + `","n`)
	f.Close()
	sink = openSink(t, path)
	if err := sink.Publish(ctx, evs[3:]); err != nil {
		t.Fatal(err)
	}
	if got, want := eventtest.ReadFile(t, path), payloads(evs); !slices.Equal(got, want) {
		t.Fatalf("lines:\ngot  %q\nwant %q", got, want)
	}
}

// TestFileSinkRecognisesAFullBatchOfLargeEvents writes a relay's full batch
// of about the largest events a token can make: roles of '<', which JSON
// writes as \u003c, six bytes for each of a token's, some 36 KiB an event
// and more than 9 MiB the batch. As after a crash between the fsync and
// marking them sent, the file is opened again and the batch published
// again, as the relay does: nothing may be appended.
func TestFileSinkRecognisesAFullBatchOfLargeEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	ctx := context.Background()
	roles := []string{strings.Repeat("<", 6000)}
	batch := make([]phone.Event, outbox.DefaultBatchSize)
	size := 0
	for i := range batch {
		id := fmt.Sprintf("0190a0b0-0000-7000-8000-%012d", i+1)
		p := phone.Phone{ID: int64(i + 1), Tenant: "TN-1", AccountID: 1, Number: "5555", Type: phone.Mobile, CountryCode: 55, CreatedAt: time.Now()}
		ev, err := phone.CreatedEvent(id, p, phone.Audit{CID: "cid", Roles: roles})
		if err != nil {
			t.Fatal(err)
		}
		ev.Seq = int64(i + 1)
		batch[i] = ev
		size += len(ev.Payload) + 1
	}
	sink := openSink(t, path)
	if err := sink.Publish(ctx, batch); err != nil {
		t.Fatal(err)
	}
	sink.Close()

	sink = openSink(t, path)
	if err := sink.Publish(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if lines := eventtest.ReadFile(t, path); len(lines) != len(batch) {
		t.Errorf("the file holds %d lines after the batch of %d events (%d bytes) was published again on a new sink; want %d", len(lines), len(batch), size, len(batch))
	}
}
