package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/phonesd/phonesd/internal/phone"
	"github.com/phonesd/phonesd/internal/sink/jetstream"
	"github.com/phonesd/phonesd/internal/testkit/faultproxy"
	"github.com/phonesd/phonesd/internal/testkit/natstest"
)

// logBuffer is a log destination the test can read while the sink writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// config returns a Config for st's stream and prefix on server, logging to
// logs.
func config(st *natstest.Stream, server string, logs *logBuffer) jetstream.Config {
	return jetstream.Config{
		URL:             server,
		SubjectPrefix:   st.Prefix,
		Stream:          st.Name,
		DuplicateWindow: 2 * time.Minute,
		PublishTimeout:  2 * time.Second,
		ReconnectWait:   50 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(logs, nil)),
	}
}

func newSink(t *testing.T, cfg jetstream.Config) *jetstream.Sink {
	t.Helper()
	s, err := jetstream.NewSink(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// proxied returns the test server's URL through a fault proxy of the test's own.
func proxied(t *testing.T, server string) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u.Host = p.Addr()
	return u.String(), p
}

// events returns n events numbered from first, as the domain builds them
// and the outbox holds them: the same events for the same numbers.
func events(t *testing.T, first, n int) []phone.Event {
	t.Helper()
	out := make([]phone.Event, n)
	for i := range out {
		seq := first + i
		p := phone.Phone{ID: int64(seq), Tenant: "TN-sink", AccountID: 1, Number: fmt.Sprintf("5555-%04d", seq),
			Type: phone.Mobile, Active: true, CountryCode: phone.DefaultCountryCode, CreatedAt: time.UnixMilli(1_800_000_000_000 + int64(seq))}
		ev, err := phone.CreatedEvent(fmt.Sprintf("00000000-0000-4000-8000-%012d", seq), p, phone.Audit{CID: fmt.Sprintf("cid-%d", seq), Origin: "API"})
		if err != nil {
			t.Fatal(err)
		}
		ev.Seq = int64(seq)
		out[i] = ev
	}
	return out
}

// checkMessages fails t unless the stream holds exactly want, in order, each
// on its subject with its event_id as Nats-Msg-Id and its payload as body.
func checkMessages(t *testing.T, st *natstest.Stream, want []phone.Event) {
	t.Helper()
	got := st.Messages(t)
	if len(got) != len(want) {
		t.Fatalf("stream holds %d messages; want %d", len(got), len(want))
	}
	for i, ev := range want {
		m := got[i]
		if wantSubj := st.Prefix + "." + ev.Domain + "." + ev.Type; m.Subject != wantSubj {
			t.Errorf("message %d: subject %q; want %q", i, m.Subject, wantSubj)
		}
		if m.MsgID != ev.ID {
			t.Errorf("message %d: Nats-Msg-Id %q; want %q", i, m.MsgID, ev.ID)
		}
		if !bytes.Equal(m.Data, ev.Payload) {
			t.Errorf("message %d: body %s; want %s", i, m.Data, ev.Payload)
		}
	}
}

// eventually calls publish until it succeeds, and fails t when it has not
// after a while.
func eventually(t *testing.T, what string, publish func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := publish()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 10s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewSinkCreatesStream(t *testing.T) {
	st := natstest.New(t)
	var logs logBuffer
	newSink(t, config(st, st.URL, &logs))
	info := st.Info(t)
	if info == nil {
		t.Fatal("stream missing after NewSink")
	}
	if got, want := info.Config.Subjects, []string{st.Prefix + ".>"}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("subjects %v; want %v", got, want)
	}
	if info.Config.Storage != natsjs.FileStorage {
		t.Errorf("storage %v; want file", info.Config.Storage)
	}
	if info.Config.Duplicates != 2*time.Minute {
		t.Errorf("duplicate window %v; want 2m", info.Config.Duplicates)
	}
	// A second replica starting finds it and keeps it.
	newSink(t, config(st, st.URL, &logs))
	if got := st.Info(t); !got.Created.Equal(info.Created) {
		t.Errorf("stream created again at %v; want the one of %v", got.Created, info.Created)
	}
}

func TestSinkPublish(t *testing.T) {
	st := natstest.New(t)
	var logs logBuffer
	sink := newSink(t, config(st, st.URL, &logs))
	ctx := context.Background()

	batch := events(t, 1, 5)
	batch[3].Domain, batch[3].Type = "other", "thing_done-2"
	if err := sink.Publish(ctx, batch); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := sink.Publish(ctx, nil); err != nil {
		t.Fatalf("Publish(nil): %v", err)
	}
	checkMessages(t, st, batch)
	if strings.Contains(logs.String(), "dropped") {
		t.Errorf("duplicates reported for a first publish:\n%s", logs.String())
	}

	// A retry of the batch, as after a lost acknowledgement, with one new
	// event behind it: JetStream drops what it has.
	retry := append(batch, events(t, 6, 1)...)
	if err := sink.Publish(ctx, retry); err != nil {
		t.Fatalf("Publish of the retry: %v", err)
	}
	checkMessages(t, st, retry)
	if !strings.Contains(logs.String(), "duplicates=5") {
		t.Errorf("log does not report the 5 duplicates:\n%s", logs.String())
	}

	bad := events(t, 7, 2)
	bad[1].Type = "two.tokens"
	if err := sink.Publish(ctx, bad); err == nil {
		t.Error("Publish of an event whose type is not one subject token: got nil error; want one")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := sink.Publish(cancelled, events(t, 7, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with cancelled ctx: got %v; want context.Canceled", err)
	}
	// Nothing of the refused batches: the good event ahead of the bad one
	// was held back with it.
	checkMessages(t, st, retry)
}

func TestNewSinkKeepsExistingStream(t *testing.T) {
	st := natstest.New(t)
	st.Create(t, natsjs.StreamConfig{
		Subjects:   []string{"other-" + st.Prefix, st.Prefix + ".>"},
		Storage:    natsjs.MemoryStorage,
		Duplicates: time.Minute,
	})
	before := st.Info(t)
	var logs logBuffer
	sink := newSink(t, config(st, st.URL, &logs))
	if err := sink.Publish(context.Background(), events(t, 1, 1)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	after := st.Info(t)
	if after.Config.Storage != natsjs.MemoryStorage || after.Config.Duplicates != time.Minute || len(after.Config.Subjects) != 2 || !after.Created.Equal(before.Created) {
		t.Errorf("stream changed: %+v; want %+v", after.Config, before.Config)
	}
	if !strings.Contains(logs.String(), "duplicate window is shorter") {
		t.Errorf("no warning about the shorter duplicate window:\n%s", logs.String())
	}
}

func TestNewSinkRefusesStreamNotCoveringItsSubjects(t *testing.T) {
	st := natstest.New(t)
	st.Create(t, natsjs.StreamConfig{Subjects: []string{st.Prefix + ".audit.>"}})
	var logs logBuffer
	_, err := jetstream.NewSink(context.Background(), config(st, st.URL, &logs))
	if !errors.Is(err, jetstream.ErrStream) || !strings.Contains(err.Error(), st.Name) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("NewSink: got error %v; want one line wrapping ErrStream and naming the stream", err)
	}
	if got := st.Info(t).Config.Subjects; len(got) != 1 || got[0] != st.Prefix+".audit.>" {
		t.Errorf("subjects changed to %v", got)
	}
}

func TestSinkStartsWithoutBroker(t *testing.T) {
	t.Run("stream created once reachable", func(t *testing.T) {
		st := natstest.New(t)
		server, proxy := proxied(t, st.URL)
		proxy.Set(faultproxy.Cut)
		var logs logBuffer
		sink := newSink(t, config(st, server, &logs))
		batch := events(t, 1, 3)

		began := time.Now()
		if err := sink.Publish(context.Background(), batch); err == nil {
			t.Fatal("Publish without a broker: got nil error; want one")
		}
		if took := time.Since(began); took > time.Second {
			t.Errorf("Publish without a broker took %v; want it to fail at once", took)
		}
		if st.Info(t) != nil {
			t.Fatal("stream exists before the broker was reachable")
		}
		proxy.Set(faultproxy.Pass)
		eventually(t, "Publish once the broker is back", func() error { return sink.Publish(context.Background(), batch) })
		checkMessages(t, st, batch)
	})

	t.Run("stream not covering its subjects", func(t *testing.T) {
		st := natstest.New(t)
		st.Create(t, natsjs.StreamConfig{Subjects: []string{st.Prefix + ".audit.*"}})
		server, proxy := proxied(t, st.URL)
		proxy.Set(faultproxy.Cut)
		var logs logBuffer
		sink := newSink(t, config(st, server, &logs))
		proxy.Set(faultproxy.Pass)
		var err error
		eventually(t, "the stream check", func() error {
			err = sink.Publish(context.Background(), events(t, 1, 1))
			if errors.Is(err, jetstream.ErrStream) {
				return nil
			}
			return err
		})
		if err := sink.Publish(context.Background(), events(t, 1, 1)); !errors.Is(err, jetstream.ErrStream) {
			t.Errorf("second Publish: got %v; want ErrStream", err)
		}
		if n := strings.Count(logs.String(), "level=ERROR"); n != 2 {
			t.Errorf("error log lines: got %d; want one per attempt, 2\n%s", n, logs.String())
		}
		if msgs := st.Messages(t); len(msgs) != 0 {
			t.Errorf("stream holds %d messages; want 0", len(msgs))
		}
	})
}

func TestSinkPublishTimesOut(t *testing.T) {
	st := natstest.New(t)
	server, proxy := proxied(t, st.URL)
	var logs logBuffer
	cfg := config(st, server, &logs)
	cfg.PublishTimeout = 300 * time.Millisecond
	sink := newSink(t, cfg)
	proxy.Set(faultproxy.Blackhole)
	began := time.Now()
	if err := sink.Publish(context.Background(), events(t, 1, 3)); err == nil {
		t.Fatal("Publish into a blackhole: got nil error; want one")
	}
	if took := time.Since(began); took > cfg.PublishTimeout+time.Second {
		t.Errorf("Publish into a blackhole took %v; want about %v", took, cfg.PublishTimeout)
	}
	proxy.Set(faultproxy.Pass)
	// The held messages may arrive late; the retry is deduplicated.
	eventually(t, "Publish after the blackhole", func() error { return sink.Publish(context.Background(), events(t, 1, 3)) })
	checkMessages(t, st, events(t, 1, 3))
}

func TestSinkRecreatesDeletedStream(t *testing.T) {
	st := natstest.New(t)
	var logs logBuffer
	sink := newSink(t, config(st, st.URL, &logs))
	if err := sink.Publish(context.Background(), events(t, 1, 1)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	st.Delete(t)
	eventually(t, "Publish after the stream was deleted", func() error { return sink.Publish(context.Background(), events(t, 2, 1)) })
	checkMessages(t, st, events(t, 2, 1))
}

func TestNewSinkConfigErrors(t *testing.T) {
	base := jetstream.Config{URL: "nats://127.0.0.1:1", SubjectPrefix: "accounts", Stream: "ACCOUNTS_EVENTS"}
	tests := []struct {
		name string
		edit func(c *jetstream.Config)
	}{
		{"prefix with a wildcard", func(c *jetstream.Config) { c.SubjectPrefix = "accounts.*" }},
		{"empty prefix", func(c *jetstream.Config) { c.SubjectPrefix = "" }},
		{"prefix with an empty token", func(c *jetstream.Config) { c.SubjectPrefix = "bank..accounts" }},
		{"stream with a dot", func(c *jetstream.Config) { c.Stream = "ACCOUNTS.EVENTS" }},
		{"empty stream", func(c *jetstream.Config) { c.Stream = "" }},
		{"missing creds file", func(c *jetstream.Config) { c.CredsFile = t.TempDir() + "/missing.creds" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.edit(&cfg)
			if _, err := jetstream.NewSink(context.Background(), cfg); err == nil {
				t.Fatal("NewSink: got nil error; want one")
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:s3cret@broker:4222", "nats://broker:4222"},
		{"tls://tok@en@broker:4222", "tls://broker:4222"},
		{"nats://a:1@one:4222, nats://b:2@two:4222", "nats://one:4222,nats://two:4222"},
	}
	for _, tt := range tests {
		if got := jetstream.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q): got %q; want %q", tt.in, got, tt.want)
		}
	}
}

// startAuthServer runs a nats-server of the test's own that admits only
// user phonesd with password right, and returns its address.
func startAuthServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("nats-server not installed (.ci/run installs it)")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", port, "--user", "phonesd", "--pass", "right")
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server not listening after 10s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewSinkCredentialsInURL(t *testing.T) {
	addr := startAuthServer(t)
	cfg := jetstream.Config{SubjectPrefix: "accounts", Stream: "ACCOUNTS_EVENTS", PublishTimeout: time.Second}

	cfg.URL = "nats://phonesd:wrong-pw@" + addr
	_, err := jetstream.NewSink(context.Background(), cfg)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") || strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("NewSink with a rejected password: got error %v; want an authorization error without the password", err)
	}

	// Admitted, on a server without JetStream: the start goes on, and
	// publishing fails until the stream can be checked.
	cfg.URL = "nats://phonesd:right@" + addr
	sink, err := jetstream.NewSink(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewSink with the right password: %v", err)
	}
	defer sink.Close()
	if err := sink.Publish(context.Background(), events(t, 1, 1)); err == nil {
		t.Error("Publish without JetStream: got nil error; want one")
	}
}

// TestNewSinkWaitsForTheClustersServers asks for a stream of three replicas
// while one server of a three-server cluster is down: JetStream cannot place
// it yet, which must not stop phonesd's start, and the stream is created
// before the first publish once the server is back.
func TestNewSinkWaitsForTheClustersServers(t *testing.T) {
	c := natstest.NewCluster(t, 3)
	st := c.NewStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	down := c.Servers[2]
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	cfg := config(st, c.Servers[0].URL()+","+c.Servers[1].URL(), &logs)
	cfg.Replicas = 3
	s := newSink(t, cfg)
	if err := s.Publish(ctx, events(t, 1, 1)); err == nil {
		t.Fatal("Publish with two of three servers up: got nil; want an error, the stream cannot have three replicas yet")
	}
	if err := down.Start(ctx); err != nil {
		t.Fatal(err)
	}
	evs := events(t, 1, 3)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Publish(ctx, evs)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish once the third server is back: still failing after 30s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if info := st.Info(t); info.Config.Replicas != 3 {
		t.Errorf("stream created with %d replicas; want 3", info.Config.Replicas)
	}
	checkMessages(t, st, evs)
}

func TestNewSinkRequiringTLSRefusesAPlainServer(t *testing.T) {
	st := natstest.New(t)
	var logs logBuffer
	cfg := config(st, st.URL, &logs)
	cfg.RequireTLS = true
	_, err := jetstream.NewSink(context.Background(), cfg)
	if !errors.Is(err, jetstream.ErrNoTLS) {
		t.Fatalf("NewSink requiring TLS of a server without it: got %v; want ErrNoTLS", err)
	}
	if got := st.Count(t); got != 0 {
		t.Errorf("stream holds %d messages; want none", got)
	}
}

// TestSinkLogsItsConnection: "NATS connected" is logged once, whether the
// server answers at once or only later, and Close is no lost connection.
func TestSinkLogsItsConnection(t *testing.T) {
	for _, c := range []struct {
		name string
		late bool // the server is unreachable when the sink starts
	}{{"server answering at once", false}, {"server answering later", true}} {
		t.Run(c.name, func(t *testing.T) {
			st := natstest.New(t)
			server, proxy := proxied(t, st.URL)
			if c.late {
				proxy.Set(faultproxy.Cut)
			}
			var logs logBuffer
			sink, err := jetstream.NewSink(context.Background(), config(st, server, &logs))
			if err != nil {
				t.Fatalf("NewSink: %v", err)
			}
			if c.late {
				proxy.Set(faultproxy.Pass)
			}
			eventually(t, "Publish", func() error { return sink.Publish(context.Background(), events(t, 1, 1)) })
			// Close returns once the connection's callbacks have run: the
			// log is complete.
			sink.Close()
			if n := strings.Count(logs.String(), "NATS connected"); n != 1 {
				t.Errorf("%q logged %d times; want 1:\n%s", "NATS connected", n, logs.String())
			}
			if strings.Contains(logs.String(), "connection lost") {
				t.Errorf("Close logged a lost connection:\n%s", logs.String())
			}
		})
	}
}

// TestProbe: Probe says whether the stream exists and holds the events'
// subjects, and creates nothing.
func TestProbe(t *testing.T) {
	ctx := context.Background()
	var logs logBuffer
	st := natstest.New(t)
	cfg := config(st, st.URL, &logs)
	if got, err := jetstream.Probe(ctx, cfg); err != nil || !strings.HasPrefix(got, "no stream "+st.Name) {
		t.Errorf("Probe without the stream: %q, %v; want no stream %s", got, err, st.Name)
	}
	if st.Info(t) != nil {
		t.Fatalf("Probe created the stream")
	}
	newSink(t, cfg)
	if got, err := jetstream.Probe(ctx, cfg); err != nil || got != "stream "+st.Name+" holds "+st.Prefix+".>" {
		t.Errorf("Probe with the stream: %q, %v; want it to hold %s.>", got, err, st.Prefix)
	}

	other := natstest.New(t)
	other.Create(t, natsjs.StreamConfig{Subjects: []string{other.Prefix + ".audit.*"}})
	if _, err := jetstream.Probe(ctx, config(other, other.URL, &logs)); !errors.Is(err, jetstream.ErrStream) {
		t.Errorf("Probe of a stream not covering the subjects: %v; want ErrStream", err)
	}
	server, proxy := proxied(t, st.URL)
	proxy.Set(faultproxy.Cut)
	if _, err := jetstream.Probe(ctx, config(st, server, &logs)); err == nil {
		t.Error("Probe without a server: nil error; want one")
	}
}
