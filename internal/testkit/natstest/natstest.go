// Package natstest gives each test a JetStream stream and subject prefix of
// its own on the NATS server named by PHONES_TEST_NATS_URL, and tests and
// tools that must stop or kill a server nats-servers of their own, alone or
// as a cluster.
package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/phonesd/phonesd/internal/testkit/eventtest"
)

const (
	// EnvVar names the variable holding the URL of a NATS server with
	// JetStream enabled.
	EnvVar = "PHONES_TEST_NATS_URL"
	// streamPrefix and subjectPrefix start the names New makes; a random
	// part follows, so that runs at the same time never share a stream.
	streamPrefix  = "PHONESD_TEST_"
	subjectPrefix = "phonesdtest"
	// staleAfter is the age past which a stream named with streamPrefix is
	// taken for the leftover of a killed run and deleted.
	staleAfter = time.Hour
	skipReason = "NATS tests skipped: set " + EnvVar + ", e.g. nats://127.0.0.1:4222, to a server with JetStream (.ci/run sets it)"
	// timeout bounds each exchange with the server, and each wait.
	timeout = 10 * time.Second
)

// Stream is a test's own stream name and subject prefix on the test server.
// New creates nothing: the code under test creates the stream, or the test
// does with Create.
type Stream struct {
	URL    string // the server, PHONES_TEST_NATS_URL
	Name   string // PHONESD_TEST_<random>
	Prefix string // phonesdtest<random>: the stream's subjects are Prefix + ".>"

	js jetstream.JetStream
}

// Message is one message of a stream, as a test checks it.
type Message struct {
	Seq         uint64
	Subject     string
	MsgID       string // the Nats-Msg-Id header
	TraceParent string // the traceparent header, "" for none
	Header      nats.Header
	Data        []byte
}

// serverURL returns the server named by PHONES_TEST_NATS_URL; it skips t
// when the variable is unset.
func serverURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvVar)
	if u == "" {
		t.Skip(skipReason)
	}
	return u
}

// New returns fresh names for t on the server named by PHONES_TEST_NATS_URL,
// and deletes the stream of that name, if one was created, when t ends. It
// skips t when the variable is unset.
func New(t testing.TB) *Stream {
	t.Helper()
	return newOn(t, serverURL(t), true)
}

// newOn returns fresh names for t on the server at url, as New does. On a
// server that outlives the test (shared), a stream left behind is an
// error; on a private one, whose storage goes with it, only a note.
func newOn(t testing.TB, url string, shared bool) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, done, err := Open(ctx, url, t.Logf)
	if err != nil {
		t.Fatalf("%s: %v", EnvVar, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		switch err := done(ctx); {
		case err == nil:
		case shared:
			t.Errorf("%v", err)
		default:
			t.Logf("%v (the private servers' storage is removed with them)", err)
		}
	})
	return s
}

// Open connects to the NATS server at url and returns fresh names on it, as
// New does, with a function that deletes the stream of that name, if one was
// created, and closes the connection. Streams of the test prefix older than
// an hour, left by killed runs, are deleted first; logf, when not nil,
// reports the ones that could not be. It returns an error when the server
// cannot be reached or has no JetStream.
func Open(ctx context.Context, url string, logf func(format string, args ...any)) (s *Stream, done func(context.Context) error, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// Only the servers named: a test may have a server advertise an
	// address that must hear from phonesd alone.
	nc, err := nats.Connect(url, nats.Name("phonesd-test"), nats.Timeout(timeout), nats.IgnoreDiscoveredServers())
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	var b [6]byte
	rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	s = &Stream{URL: url, Name: streamPrefix + strings.ToUpper(suffix), Prefix: subjectPrefix + suffix, js: js}
	deleteStale(ctx, logf, js, time.Now())
	done = func(ctx context.Context) error {
		defer nc.Close()
		if err := js.DeleteStream(ctx, s.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", s.Name, err)
		}
		return nil
	}
	return s, done, nil
}

// deleteStale deletes the streams named with streamPrefix that are older
// than staleAfter. Failures are only logged: another run may be deleting the
// same stream, and none of them concerns the caller.
func deleteStale(ctx context.Context, logf func(format string, args ...any), js jetstream.JetStream, now time.Time) {
	list := js.ListStreams(ctx)
	var stale []string
	for info := range list.Info() {
		if strings.HasPrefix(info.Config.Name, streamPrefix) && now.Sub(info.Created) > staleAfter {
			stale = append(stale, info.Config.Name)
		}
	}
	if err := list.Err(); err != nil {
		logf("list test streams: %v", err)
	}
	for _, name := range stale {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			logf("delete stale stream %s: %v", name, err)
		}
	}
}

// Create creates the stream with cfg, its name set to s.Name: for tests of
// what the code under test does with a stream that already exists.
func (s *Stream) Create(t testing.TB, cfg jetstream.StreamConfig) {
	t.Helper()
	cfg.Name = s.Name
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := s.js.CreateStream(ctx, cfg); err != nil {
		t.Fatalf("create stream %s: %v", s.Name, err)
	}
}

// Info returns the stream's configuration and state, or nil when it does
// not exist.
func (s *Stream) Info(t testing.TB) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := s.js.Stream(ctx, s.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("stream %s: %v", s.Name, err)
	}
	return st.CachedInfo()
}

// Messages returns every message of the stream in stream order; none when
// the stream does not exist. It fails t when an event among them breaks
// the event contract: every test that reads events from JetStream checks
// them here.
func (s *Stream) Messages(t testing.TB) []Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	msgs, err := s.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		eventtest.CheckMessage(t, m.Subject, m.Header, m.Data)
	}
	return msgs
}

// ReadAll returns every message of the stream in stream order; none when
// the stream does not exist. It returns an error when the server does not
// answer within ctx.
func (s *Stream) ReadAll(ctx context.Context) ([]Message, error) {
	st, err := s.js.Stream(ctx, s.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", s.Name, err)
	}
	state := st.CachedInfo().State
	if state.Msgs == 0 {
		return nil, nil
	}
	var out []Message
	for seq := state.FirstSeq; seq <= state.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: message %d: %w", s.Name, seq, err)
		}
		out = append(out, Message{Seq: m.Sequence, Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader), TraceParent: m.Header.Get("traceparent"), Header: m.Header, Data: m.Data})
	}
	return out, nil
}

// WaitMessages polls until the stream holds at least n messages and returns
// them all; it fails t when they do not arrive in time.
func (s *Stream) WaitMessages(t testing.TB, n int) []Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.Count(t)
		if got >= uint64(n) {
			return s.Messages(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: %d messages after %v; want %d", s.Name, got, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Delete deletes the stream, as an operator might while a test runs.
func (s *Stream) Delete(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.js.DeleteStream(ctx, s.Name); err != nil {
		t.Fatalf("delete stream %s: %v", s.Name, err)
	}
}

// Count returns how many messages the stream holds; 0 when it does not
// exist.
func (s *Stream) Count(t testing.TB) uint64 {
	t.Helper()
	info := s.Info(t)
	if info == nil {
		return 0
	}
	return info.State.Msgs
}

// Leader returns the name of the server that leads the stream in a
// cluster; empty when it has no leader right now or runs on a lone server.
func (s *Stream) Leader(ctx context.Context) (string, error) {
	st, err := s.js.Stream(ctx, s.Name)
	if err != nil {
		return "", fmt.Errorf("stream %s: %w", s.Name, err)
	}
	if c := st.CachedInfo().Cluster; c != nil {
		return c.Leader, nil
	}
	return "", nil
}

// LastSeq returns the sequence of the last message the stream stored,
// asking whichever server answers within ctx.
func (s *Stream) LastSeq(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, s.Name)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", s.Name, err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// Range calls fn with each message of the stream from sequence from to
// sequence to, in order, with the time the stream stored it. It reads
// through an ordered consumer, in batches: far faster than message by
// message for a large range. It returns an error when the stream does not
// deliver up to to within ctx.
func (s *Stream) Range(ctx context.Context, from, to uint64, fn func(seq uint64, stored time.Time, data []byte)) error {
	if from > to {
		return nil
	}
	cons, err := s.js.OrderedConsumer(ctx, s.Name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", s.Name, err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("stream %s: %w", s.Name, err)
		}
		for msg := range batch.Messages() {
			md, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("stream %s: %w", s.Name, err)
			}
			fn(md.Sequence.Stream, md.Timestamp, msg.Data())
			if md.Sequence.Stream >= to {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("stream %s: %w", s.Name, err)
		}
	}
}
