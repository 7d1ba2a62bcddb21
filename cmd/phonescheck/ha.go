package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// standbyName is the pg-failover standby's cluster_name, which the
// primary's synchronous_standby_names names.
const standbyName = "standby1"

// lossExpected reports whether the trial's setup may lose acknowledged
// writes by design: a failover to an asynchronous standby.
func (s *trial) lossExpected() bool {
	return s.sc.standby && s.c.opts.asyncStandby
}

// startFailoverPair starts a private primary and a streaming standby of
// it, synchronous unless --async-standby, creates the scenario's database,
// and returns the URL phonesd gets: both hosts, the primary first, so that
// after the failover phonesd finds the promoted standby by itself.
func (s *trial) startFailoverPair(ctx context.Context) (string, error) {
	var settings []string
	mode := "async"
	if !s.c.opts.asyncStandby {
		// A commit returns once the standby has flushed it too
		// (synchronous_commit=on, which phonesd sets on every connection).
		settings = append(settings, "synchronous_standby_names="+standbyName)
		mode = "sync"
	}
	primary, err := pgtest.StartCluster(ctx, "primary", settings...)
	if err != nil {
		return "", err
	}
	s.pg = primary
	s.cleanups = append(s.cleanups, primary.Stop)
	standby, err := primary.StartStandby(ctx, standbyName)
	if err != nil {
		return "", err
	}
	s.standby = standby
	s.cleanups = append(s.cleanups, standby.Stop)
	if err := primary.WaitStreaming(ctx, standbyName, mode); err != nil {
		return "", err
	}
	if _, err := primary.CreateDatabase(ctx, "phonescheck"); err != nil {
		return "", fmt.Errorf("private cluster: %w", err)
	}
	kind := "a synchronous"
	if mode == "async" {
		kind = "an asynchronous"
	}
	s.note("private PostgreSQL primary on 127.0.0.1:%d with %s standby on 127.0.0.1:%d", primary.Port, kind, standby.Port)
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/phonescheck?sslmode=disable&target_session_attrs=read-write",
		primary.Port, standby.Port), nil
}

// startNATSCluster starts the scenario's JetStream cluster and returns the
// URL phonesd gets: every server, separated by commas.
func (s *trial) startNATSCluster(ctx context.Context) (string, error) {
	c, err := natstest.StartCluster(ctx, s.dir, s.sc.natsCluster)
	if err != nil {
		return "", err
	}
	s.cluster = c
	s.cleanups = append(s.cleanups, c.Stop)
	s.note("private JetStream cluster of %d nats-servers, the stream with %d replicas", len(c.Servers), s.sc.natsCluster)
	return c.URL(), nil
}

// drivePostgresFailover kills the primary's whole server with SIGKILL a
// third into the load, as the loss of its machine would, and promotes the
// standby at once, as a failover tool would once it noticed: the time from
// the kill to the first 200 is phonesd's part of a failover, without the
// tool's detection delay.
func drivePostgresFailover(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	defer s.load.stop()
	third := s.c.opts.duration / 3
	if err := sleep(ctx, third); err != nil {
		return err
	}
	killed := time.Now()
	if err := s.pg.Kill(); err != nil {
		return err
	}
	if err := s.standby.Promote(ctx); err != nil {
		return err
	}
	promoted := time.Since(killed)
	if err := sleep(ctx, 2*third); err != nil {
		return err
	}
	s.load.stop()

	// The first 200 to a create sent after the kill.
	creates, _ := s.ledger.snapshot()
	var first time.Time
	failed := 0
	for _, e := range creates {
		if !e.Start.After(killed) {
			continue
		}
		if e.Class == classOK && (first.IsZero() || e.End.Before(first)) {
			first = e.End
		}
		if e.Class == classUnknown {
			failed++
		}
	}
	if first.IsZero() {
		s.violate("failover", "no create sent after the kill answered 200")
		return nil
	}
	s.note("primary killed (kill -9 of its whole server) %.1fs into the load; standby promoted %.2fs after the kill; first 200 %.2fs after the kill; %d creates sent after the kill got a 5xx or no answer",
		third.Seconds(), promoted.Seconds(), first.Sub(killed).Seconds(), failed)
	return nil
}

// driveNATSNodeKill kills the stream's leader with SIGKILL a third into the
// load and starts it again a third later, while a watcher records when the
// stream stores: the pause is the time from the kill to the first event the
// stream stored after it.
func driveNATSNodeKill(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	defer s.load.stop()
	w := watchStream(s.stream)
	defer w.stop()
	third := s.c.opts.duration / 3
	if err := sleep(ctx, third); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	leader, err := s.stream.Leader(lctx)
	cancel()
	if err != nil {
		return err
	}
	srv := s.cluster.Server(leader)
	if srv == nil {
		return fmt.Errorf("the stream's leader %q is none of the cluster's servers", leader)
	}
	killed := time.Now()
	if err := srv.Kill(); err != nil {
		return err
	}
	if err := sleep(ctx, third); err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	restarted := time.Since(killed)
	if err := sleep(ctx, third); err != nil {
		return err
	}
	// The load goes on until the stream stores again, or for
	// storeDeadline after the kill: a relay that failed through the
	// election retries after its backoff, which may outlast the thirds.
	for _, ok := w.pauseAfter(killed); !ok && time.Since(killed) < storeDeadline; _, ok = w.pauseAfter(killed) {
		if err := sleep(ctx, watchPoll); err != nil {
			return err
		}
	}
	s.load.stop()
	w.stop()

	lctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	next, err := s.stream.Leader(lctx)
	cancel()
	if err != nil {
		next = "unknown (" + err.Error() + ")"
	}
	pause, ok := w.pauseAfter(killed)
	if !ok {
		s.violate("delivery", "the stream stored nothing after %s was killed", leader)
	} else {
		s.note("stream leader %s killed (kill -9) %.1fs into the load, started again %.1fs later; leader now %s; the stream stored no event for %.2fs after the kill (last before it %.2fs earlier)",
			leader, third.Seconds(), restarted.Seconds(), next, pause.Seconds(), w.sinceLastBefore(killed).Seconds())
	}
	s.requireAnswered("while a broker server is lost")
	return nil
}

// storeDeadline is how long after a broker server's kill the stream must
// store again, under load, for the delivery to count as resumed.
const storeDeadline = 30 * time.Second

// streamWatch polls a stream's last sequence and records when it grew.
type streamWatch struct {
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu     sync.Mutex
	growth []time.Time // when a poll first saw a higher last sequence
}

// watchPoll is how often the watcher asks; each ask waits at most
// watchTimeout, as a cluster electing a leader does not answer.
const (
	watchPoll    = 20 * time.Millisecond
	watchTimeout = 500 * time.Millisecond
)

func watchStream(st *natstest.Stream) *streamWatch {
	w := &streamWatch{done: make(chan struct{})}
	w.wg.Go(func() {
		var last uint64
		for {
			ctx, cancel := context.WithTimeout(context.Background(), watchTimeout)
			seq, err := st.LastSeq(ctx)
			cancel()
			if err == nil && seq > last {
				if last > 0 {
					w.mu.Lock()
					w.growth = append(w.growth, time.Now())
					w.mu.Unlock()
				}
				last = seq
			}
			select {
			case <-w.done:
				return
			case <-time.After(watchPoll):
			}
		}
	})
	return w
}

func (w *streamWatch) stop() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

// pauseAfter returns how long after t the stream was first seen to grow.
func (w *streamWatch) pauseAfter(t time.Time) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, g := range w.growth {
		if g.After(t) {
			return g.Sub(t), true
		}
	}
	return 0, false
}

// sinceLastBefore returns how long before t the stream was last seen to
// grow: the resolution of the pause.
func (w *streamWatch) sinceLastBefore(t time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var last time.Time
	for _, g := range w.growth {
		if g.After(t) {
			break
		}
		last = g
	}
	if last.IsZero() {
		return 0
	}
	return t.Sub(last)
}
