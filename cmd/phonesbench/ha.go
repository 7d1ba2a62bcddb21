package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/latency"
	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// Topologies of --ha: the same private servers, without and with their
// replicas, measured in one run.
const (
	topologySingle = "single"
	topologyHA     = "ha"
)

// haStandby is the synchronous standby's name, which the primary's
// synchronous_standby_names names.
const haStandby = "standby1"

// topology is the servers a --ha run starts for itself: a private
// PostgreSQL primary, with a synchronous standby for topologyHA; and a
// nats-server, or for topologyHA a three-server JetStream cluster whose
// stream has three replicas.
type topology struct {
	name     string
	pg       *pgtest.Cluster
	standby  *pgtest.Cluster
	nats     *natstest.Server
	cluster  *natstest.Cluster
	natsURL  string
	replicas int // of the stream
	dbURL    string
	stream   *natstest.Stream
	done     func(context.Context) error // deletes the stream
}

// startTopology starts the servers of the topology name, their stores
// under dir (PostgreSQL's in the system's temporary directory, which its
// user can reach).
func startTopology(ctx context.Context, name, dir string) (_ *topology, err error) {
	t := &topology{name: name, replicas: 1}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.stop(context.WithoutCancel(ctx)))
		}
	}()
	var settings []string
	if name == topologyHA {
		settings = append(settings, "synchronous_standby_names="+haStandby)
	}
	if t.pg, err = pgtest.StartCluster(ctx, "primary", settings...); err != nil {
		return nil, err
	}
	hosts := fmt.Sprintf("127.0.0.1:%d", t.pg.Port)
	if name == topologyHA {
		if t.standby, err = t.pg.StartStandby(ctx, haStandby); err != nil {
			return nil, err
		}
		if err := t.pg.WaitStreaming(ctx, haStandby, "sync"); err != nil {
			return nil, err
		}
		hosts += fmt.Sprintf(",127.0.0.1:%d", t.standby.Port)
	}
	if _, err := t.pg.CreateDatabase(ctx, "phonesbench"); err != nil {
		return nil, err
	}
	t.dbURL = "postgres://postgres@" + hosts + "/phonesbench?sslmode=disable&target_session_attrs=read-write"

	if name == topologyHA {
		if t.cluster, err = natstest.StartCluster(ctx, dir, 3); err != nil {
			return nil, err
		}
		t.natsURL, t.replicas = t.cluster.URL(), 3
	} else {
		if t.nats, err = natstest.StartServer(ctx, dir); err != nil {
			return nil, err
		}
		t.natsURL = t.nats.URL()
	}
	if t.stream, t.done, err = natstest.Open(ctx, t.natsURL, nil); err != nil {
		return nil, fmt.Errorf("NATS: %w", err)
	}
	return t, nil
}

// describe says what the topology runs, for the progress lines.
func (t *topology) describe() string {
	if t.name == topologyHA {
		return fmt.Sprintf("PostgreSQL primary 127.0.0.1:%d with a synchronous standby 127.0.0.1:%d; 3 nats-servers, stream with 3 replicas", t.pg.Port, t.standby.Port)
	}
	return fmt.Sprintf("PostgreSQL 127.0.0.1:%d alone; 1 nats-server, stream with 1 replica", t.pg.Port)
}

// env is what phonesd needs to send its events to the topology's stream.
func (t *topology) env() map[string]string {
	return map[string]string{
		"PHONES_EVENTS_URL":          t.natsURL,
		"PHONES_NATS_STREAM":         t.stream.Name,
		"PHONES_NATS_SUBJECT_PREFIX": t.stream.Prefix,
		"PHONES_NATS_REPLICAS":       strconv.Itoa(t.replicas),
	}
}

// stop deletes the stream and stops every server.
func (t *topology) stop(ctx context.Context) error {
	var errs []error
	if t.done != nil {
		errs = append(errs, t.done(ctx))
	}
	if t.cluster != nil {
		errs = append(errs, t.cluster.Stop())
	}
	if t.nats != nil {
		errs = append(errs, t.nats.Stop())
	}
	for _, c := range []*pgtest.Cluster{t.standby, t.pg} {
		if c != nil {
			errs = append(errs, c.Stop())
		}
	}
	return errors.Join(errs...)
}

// streamCounter counts the events a stream holds: its last sequence, as
// the bench's streams are new and never lose a message.
type streamCounter struct{ st *natstest.Stream }

func (c streamCounter) count() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seq, err := c.st.LastSeq(ctx)
	return int64(seq), err
}

// lagResult is how long events took from their transaction to the
// stream: the stream's store time minus the event's timestamp, which is
// its transaction's time in milliseconds.
type lagResult struct {
	Events int     `json:"events"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// deliveryLag measures the lag of the stream's messages from sequence
// from to to whose transactions began at or after since (the measured
// span, not the warm-up).
func deliveryLag(ctx context.Context, st *natstest.Stream, from, to uint64, since time.Time) (*lagResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	lags := latency.New()
	err := st.Range(ctx, from, to, func(_ uint64, stored time.Time, data []byte) {
		var ev struct {
			Timestamp time.Time `json:"timestamp"`
		}
		if json.Unmarshal(data, &ev) != nil || ev.Timestamp.Before(since) {
			return
		}
		lags.Record(stored.Sub(ev.Timestamp))
	})
	if err != nil {
		return nil, fmt.Errorf("delivery lag: %w", err)
	}
	if lags.Count() == 0 {
		return nil, nil
	}
	return &lagResult{Events: int(lags.Count()), P50ms: millis(lags.Quantile(0.5)), P99ms: millis(lags.Quantile(0.99)), MaxMs: millis(lags.Max())}, nil
}

// printHA compares, for each concurrency measured in both topologies, the
// replicated one with the single one.
func printHA(w io.Writer, r report) {
	type key struct {
		replicas    int
		concurrency int
	}
	type pair struct {
		single, ha *levelResult
		commits    [2]float64
	}
	pairs := map[key]*pair{}
	var order []key
	for i := range r.Runs {
		run := &r.Runs[i]
		if run.Topology == "" {
			continue
		}
		for j := range run.Levels {
			l := &run.Levels[j]
			k := key{max(run.Replicas, 1), l.Concurrency}
			p := pairs[k]
			if p == nil {
				p = &pair{}
				pairs[k] = p
				order = append(order, k)
			}
			commit := 0.0
			if run.Storage != nil {
				commit = run.Storage.P50ms
			}
			if run.Topology == topologyHA {
				p.ha, p.commits[1] = l, commit
			} else {
				p.single, p.commits[0] = l, commit
			}
		}
	}
	t := table{header: []string{"replicas", "conc", "creates/s single", "creates/s HA", "HA ÷ single", "create p50 ms single/HA", "create p99 ms single/HA", "bare commit p50 ms single/HA", "event lag p50 ms single/HA", "event lag p99 ms single/HA"}}
	for _, k := range order {
		p := pairs[k]
		if p.single == nil || p.ha == nil {
			continue
		}
		ratio := 0.0
		if p.single.Creates.PerSecond > 0 {
			ratio = p.ha.Creates.PerSecond / p.single.Creates.PerSecond
		}
		lag := func(l *levelResult, p99 bool) string {
			if l.DeliveryLag == nil {
				return "n/a"
			}
			if p99 {
				return ms(l.DeliveryLag.P99ms)
			}
			return ms(l.DeliveryLag.P50ms)
		}
		t.add(strconv.Itoa(k.replicas), strconv.Itoa(k.concurrency),
			fmt.Sprintf("%.0f", p.single.Creates.PerSecond), fmt.Sprintf("%.0f", p.ha.Creates.PerSecond), fmt.Sprintf("%.2f", ratio),
			ms(p.single.Creates.P50ms)+" / "+ms(p.ha.Creates.P50ms), ms(p.single.Creates.P99ms)+" / "+ms(p.ha.Creates.P99ms),
			ms(p.commits[0])+" / "+ms(p.commits[1]),
			lag(p.single, false)+" / "+lag(p.ha, false), lag(p.single, true)+" / "+lag(p.ha, true))
	}
	if len(t.rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "High availability: single = PostgreSQL alone and one nats-server (stream R1); HA = PostgreSQL with a synchronous")
	fmt.Fprintln(w, "standby and a three-server JetStream cluster (stream R3). Event lag: from the event's transaction to the stream storing it.")
	t.write(w)
}
