package outbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"phonesd/internal/outbox"
	"phonesd/internal/phone"
)

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
			sink := openFileSink(t, path)
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
	sink := openFileSink(t, path)
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

func TestNewFileSinkMissingDirectory(t *testing.T) {
	_, err := outbox.NewFileSink(filepath.Join(t.TempDir(), "missing", "events.jsonl"))
	if err == nil {
		t.Fatal("NewFileSink: got nil error; want one")
	}
}

func TestFileSinkMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	openFileSink(t, path)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The umask may only remove bits.
	if perm := info.Mode().Perm(); perm&^0o644 != 0 {
		t.Errorf("mode: got %v; want at most 0644", perm)
	}
}
