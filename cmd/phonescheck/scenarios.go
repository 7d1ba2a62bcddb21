package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/testkit/faultproxy"
	"github.com/phonesd/phonesd/internal/testkit/latency"
	"github.com/phonesd/phonesd/internal/testkit/launch"
)

// scenario is a fault script and the setup it needs.
type scenario struct {
	name  string
	about string
	// backends are the storages it applies to; shortBackends those it runs
	// on with --short (none: not in the short set).
	backends      []string
	shortBackends []string
	sink          string // "file" (one per replica) or "jetstream"
	replicas      int
	// privatePG runs PostgreSQL as a cluster of the checker's own, and
	// privateNATS a nats-server of its own.
	privatePG   bool
	privateNATS bool
	// standby gives the private PostgreSQL cluster a streaming standby,
	// synchronous unless --async-standby, for a failover; natsCluster
	// runs that many nats-servers of the checker's own as one JetStream
	// cluster, the stream replicated on each.
	standby     bool
	natsCluster int
	// lateWithin is observed.LateWithin: how far behind its outbox order
	// an event may reach the stream.
	lateWithin int64
	// proxyDB and proxyNATS put a fault proxy in phonesd's link to them.
	proxyDB   bool
	proxyNATS bool
	// loseCommits reads PostgreSQL's messages in the proxy, which needs an
	// unencrypted link (loopback only), so that it can lose COMMIT replies.
	loseCommits bool
	// drive starts the replicas and the load, injects the faults, and
	// returns with the load stopped; the replicas are brought back after.
	drive func(ctx context.Context, s *trial) error
}

func scenarios() []*scenario {
	both := []string{"sqlite", "postgres"}
	return []*scenario{
		{name: "kill", about: "kill -9 of phonesd under load, restarted each time",
			backends: both, shortBackends: both, sink: "file", drive: driveKill},
		{name: "pg-reset", about: "PostgreSQL connections cut and blackholed by a TCP proxy under load",
			backends: []string{"postgres"}, shortBackends: []string{"postgres"}, sink: "file", proxyDB: true, drive: drivePostgresReset},
		{name: "pg-lost-commit", about: "PostgreSQL's replies to COMMIT lost by a proxy under load, after the server committed",
			backends: []string{"postgres"}, shortBackends: []string{"postgres"}, sink: "file", proxyDB: true, loseCommits: true, drive: drivePostgresLostCommit},
		{name: "pg-restart", about: "a private PostgreSQL cluster restarted with -m immediate under load",
			backends: []string{"postgres"}, sink: "file", privatePG: true, drive: drivePostgresRestart},
		{name: "pg-failover", about: "the PostgreSQL primary killed (kill -9) under load and its standby promoted, as a failover tool would",
			backends: []string{"postgres"}, shortBackends: []string{"postgres"}, sink: "file", privatePG: true, standby: true, drive: drivePostgresFailover},
		{name: "nats-outage", about: "the JetStream link cut for a while under load: creates keep answering, the backlog drains",
			backends: both, shortBackends: []string{"sqlite"}, sink: "jetstream", proxyNATS: true, drive: driveNATSOutage},
		{name: "nats-restart", about: "a private nats-server stopped for a while under load, then started again",
			backends: both, sink: "jetstream", privateNATS: true, drive: driveNATSOutage},
		{name: "nats-node-kill", about: "the stream's leader in a three-server JetStream cluster killed (kill -9) under load, then restarted",
			backends: both, shortBackends: []string{"sqlite"}, sink: "jetstream", natsCluster: 3, lateWithin: outbox.DefaultBatchSize, drive: driveNATSNodeKill},
		{name: "relay-crash", about: "the relay killed between JetStream's ack and marking the events sent",
			backends: both, shortBackends: []string{"sqlite"}, sink: "jetstream", proxyNATS: true, drive: driveRelayCrash},
		{name: "relay-crash", about: "the relay killed between the events file's fsync and marking the events sent",
			backends: both, shortBackends: []string{"sqlite"}, sink: "file", drive: driveRelayCrashFile},
		{name: "replicas", about: "three replicas on one PostgreSQL, each killed once under load",
			backends: []string{"postgres"}, shortBackends: []string{"postgres"}, sink: "file", replicas: 3, drive: driveReplicas},
		{name: "datadir", about: "a second phonesd started on the data directory of one under load, as a rolling deploy on a shared volume would: it exits within a second",
			backends: both, shortBackends: []string{"sqlite"}, sink: "file", drive: driveSecondOnDataDir},
		{name: "sigterm", about: "SIGTERM under load: in-flight requests finish, exit in under 25s",
			backends: both, shortBackends: both, sink: "file", drive: driveSigterm},
		{name: "hostile", about: "slowloris, header floods, deep JSON and 2 MiB bodies beside a normal client",
			backends: both, shortBackends: []string{"sqlite"}, sink: "file", drive: driveHostile},
		{name: "slow-bodies", about: "one tenant's 600 requests whose body stops after a byte, beside a normal client",
			backends: both, shortBackends: []string{"sqlite"}, sink: "file", drive: driveSlowBodies},
		{name: "junk-tokens", about: "100 tokens a second with unknown key ids while the key set takes 4s to serve, beside a normal client",
			backends: both, shortBackends: []string{"sqlite"}, sink: "file", drive: driveJunkTokens},
	}
}

// restartStats sums how long restarts took.
type restartStats struct {
	n        int
	total    time.Duration
	longest  time.Duration
	describe string
}

func (r *restartStats) add(d time.Duration) {
	r.n++
	r.total += d
	r.longest = max(r.longest, d)
}

func (r *restartStats) String() string {
	if r.n == 0 {
		return "no " + r.describe
	}
	return fmt.Sprintf("%d %s; back in %.2fs on average, %.2fs at most", r.n, r.describe, (r.total / time.Duration(r.n)).Seconds(), r.longest.Seconds())
}

// driveKill kills phonesd with SIGKILL at even intervals under load and
// starts it again at once, as a supervisor would.
func driveKill(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	defer s.load.stop()
	kills := s.c.opts.kills
	gap := s.c.opts.duration / time.Duration(kills+1)
	r := s.replicas[0]
	st := restartStats{describe: "kill -9s"}
	for range kills {
		if err := sleep(ctx, gap); err != nil {
			return err
		}
		r.Kill()
		began := time.Now()
		if err := r.Start(ctx); err != nil {
			return err
		}
		st.add(time.Since(began))
	}
	s.note("%s", st.String())
	return sleep(ctx, gap)
}

// drivePostgresReset takes PostgreSQL away from phonesd through the proxy,
// alternately cutting the link (every connection reset) and blackholing it
// (nothing passes, so commits hang until the storage timeout), and gives it
// back each time.
func drivePostgresReset(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	defer s.load.stop()
	var cuts, holes int
	_, length, err := s.faultWindows(ctx, 3, 6, 3*time.Second, func(i int) (restore func()) {
		mode := faultproxy.Cut
		if i%2 == 1 {
			mode = faultproxy.Blackhole
			holes++
		} else {
			cuts++
		}
		s.dbProxy.Set(mode)
		return func() { s.dbProxy.Set(faultproxy.Pass) }
	})
	if err != nil {
		return err
	}
	s.note("PostgreSQL link cut %d times and blackholed %d times, %.1fs each", cuts, holes, length.Seconds())
	return nil
}

// drivePostgresLostCommit loses PostgreSQL's replies to COMMITs under
// load, in windows: in turns those of multi-row batches of creates only,
// and those of every commit, updates and the relay's marks included. Each
// lost reply cuts its connection after the server committed: the creates
// and the update of that transaction answer 500, their fate unknown, and no
// answer may contradict what was stored.
func drivePostgresLostCommit(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	defer s.load.stop()
	windows, length, err := s.faultWindows(ctx, 4, 8, 2*time.Second, func(i int) (restore func()) {
		minRows := 2
		if i%2 == 1 {
			minRows = 0
		}
		s.dbProxy.LoseCommitReplies(minRows)
		return s.dbProxy.KeepCommitReplies
	})
	if err != nil {
		return err
	}
	lost := s.dbProxy.CommitRepliesLost()
	s.note("%d COMMIT replies lost in %d windows of %.1fs, in turns those of multi-row batches of creates and those of every commit", lost, windows, length.Seconds())
	if lost == 0 {
		s.violate("fault", "no COMMIT reply was lost: the scenario tested nothing")
	}
	return nil
}

// faultWindows spreads fault windows evenly over the load, short of them
// with --short and full otherwise, each as long as longest at most and
// never more than half the gap between two: fault(i) opens window i and
// returns what closes it. It returns after the quiet gap that follows the
// last window, with the number of windows and their length.
func (s *trial) faultWindows(ctx context.Context, short, full int, longest time.Duration, fault func(i int) (restore func())) (n int, length time.Duration, err error) {
	n = short
	if !s.c.opts.short {
		n = full
	}
	gap := s.c.opts.duration / time.Duration(n+1)
	length = min(longest, gap/2)
	for i := range n {
		if err := sleep(ctx, gap-length); err != nil {
			return n, length, err
		}
		restore := fault(i)
		err := sleep(ctx, length)
		restore()
		if err != nil {
			return n, length, err
		}
	}
	return n, length, sleep(ctx, gap)
}

// drivePostgresRestart restarts the private cluster with -m immediate at
// even intervals under load.
func drivePostgresRestart(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	defer s.load.stop()
	restarts := 2
	if !s.c.opts.short {
		restarts = 5
	}
	gap := s.c.opts.duration / time.Duration(restarts+1)
	st := restartStats{describe: "immediate restarts of PostgreSQL"}
	for range restarts {
		if err := sleep(ctx, gap); err != nil {
			return err
		}
		took, err := s.pg.RestartImmediate(ctx)
		if err != nil {
			return err
		}
		st.add(took)
	}
	s.note("%s", st.String())
	return sleep(ctx, gap)
}

// driveNATSOutage takes JetStream away for half the run, by cutting the
// link through the proxy or by stopping the private nats-server: every
// create must still answer, the events wait in the outbox and are
// delivered once the broker is back.
func driveNATSOutage(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	quarter := s.c.opts.duration / 4
	if err := sleep(ctx, quarter); err != nil {
		s.load.stop()
		return err
	}
	what := "JetStream link cut"
	if s.nats != nil {
		what = "nats-server stopped (SIGTERM)"
		if err := s.nats.Stop(); err != nil {
			s.load.stop()
			return err
		}
	} else {
		s.natsProxy.Set(faultproxy.Cut)
	}
	cut := time.Now()
	if err := sleep(ctx, 2*quarter); err != nil {
		s.load.stop()
		return err
	}
	backlog := s.pending()
	if s.nats != nil {
		if err := s.nats.Start(ctx); err != nil {
			s.load.stop()
			return err
		}
	} else {
		s.natsProxy.Set(faultproxy.Pass)
	}
	outage := time.Since(cut)
	err := sleep(ctx, quarter)
	s.load.stop()
	s.note("%s for %.1fs; %d events waiting in the outbox when it came back", what, outage.Seconds(), backlog)
	// Nothing else failed: every request must have had its answer.
	s.requireAnswered("during a broker outage")
	return err
}

// requireAnswered records a violation for every create and update that got
// no answer, a timeout or a 5xx, when only the broker suffered: it is not on
// their path.
func (s *trial) requireAnswered(while string) {
	creates, updates := s.ledger.snapshot()
	for _, e := range creates {
		if e.Class == classUnknown {
			s.violate("availability", "%s: %s creates keep answering", describe(e), while)
		}
	}
	for _, u := range updates {
		if u.Class == classUnknown {
			s.violate("availability", "update #%d of phone %d answered %s: %s updates keep answering", u.Seq, u.PhoneID, outcome(u.attempt), while)
		}
	}
}

// pending returns the outbox backlog /readyz reports, -1 if unknown.
func (s *trial) pending() int64 {
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, r := range s.replicas {
		if rd, err := ready(r, hc); err == nil && rd.pending >= 0 {
			return rd.pending
		}
	}
	return -1
}

// driveRelayCrash starts phonesd with the relay-after-publish failpoint
// while the JetStream link is cut, so that events pile up under load; gives
// the link back, so that the relay publishes a batch, gets JetStream's ack
// and dies before marking it sent; and starts it again, several times.
// Each restart publishes the unmarked batch again, and JetStream must drop
// the copies: the stream must hold each event once.
func driveRelayCrash(ctx context.Context, s *trial) error {
	cycles := s.c.opts.kills
	segment := s.c.opts.duration / time.Duration(cycles)
	r := s.replicas[0]
	crashes := 0
	for i := range cycles {
		s.natsProxy.Set(faultproxy.Cut)
		if err := r.Start(ctx, "PHONES_FAILPOINTS=relay-after-publish", infoLog); err != nil {
			s.load.stop()
			return err
		}
		if i == 0 {
			s.load.start()
		}
		if err := sleep(ctx, segment); err != nil {
			s.load.stop()
			return err
		}
		s.natsProxy.Set(faultproxy.Pass)
		crashed, err := s.awaitFailpoint(ctx, r, i+1, "of the broker's return")
		if err != nil {
			s.load.stop()
			return err
		}
		if crashed {
			crashes++
		}
	}
	if err := r.Start(ctx, infoLog); err != nil {
		s.load.stop()
		return err
	}
	err := sleep(ctx, min(segment, 3*time.Second))
	s.load.stop()
	s.note("the relay died %d times between JetStream's ack and marking the events sent", crashes)
	s.note("%s", droppedCopies(r.LogPath))
	return err
}

// awaitFailpoint waits for start n of r to exit at the relay-after-publish
// failpoint, and reports whether it did; what else happened is a violation.
// since says from when the 45 s it may take count, for the report.
func (s *trial) awaitFailpoint(ctx context.Context, r *launch.Process, n int, since string) (bool, error) {
	select {
	case <-r.Exited():
	case <-time.After(45 * time.Second):
		s.violate("failpoint", "start %d: the relay did not reach relay-after-publish within 45s %s", n, since)
		r.Kill()
	case <-ctx.Done():
		return false, ctx.Err()
	}
	code := r.ExitCode()
	if code != outbox.FailpointExitCode && code != -1 {
		s.violate("failpoint", "start %d exited with status %d; want %d, the failpoint's\n%s", n, code, outbox.FailpointExitCode, r.LogTail())
	}
	return code == outbox.FailpointExitCode, nil
}

// crashAfterRounds is how many publishing rounds a process of the file
// variant of relay-crash serves before its failpoint fires: under load, a
// fraction of a second.
const crashAfterRounds = 20

// driveRelayCrashFile starts phonesd under load with the
// relay-after-publish failpoint set to fire after crashAfterRounds rounds,
// so that each process serves a while, then dies between the fsync of a
// batch and marking it sent; and starts it again, several times. Each start
// must find that batch in the file and mark it without writing it again:
// the file must hold each event once.
func driveRelayCrashFile(ctx context.Context, s *trial) error {
	r := s.replicas[0]
	failpoint := fmt.Sprintf("PHONES_FAILPOINTS=relay-after-publish@%d", crashAfterRounds)
	crashes := 0
	for i := range s.c.opts.kills {
		if i == 0 {
			// Nothing is pending yet, so the relay has no round to
			// crash in before the load begins.
			if err := r.Start(ctx, failpoint); err != nil {
				return err
			}
			s.load.start()
		} else if err := r.Launch(failpoint); err != nil {
			s.load.stop()
			return err
		}
		crashed, err := s.awaitFailpoint(ctx, r, i+1, "of its start")
		if err != nil {
			s.load.stop()
			return err
		}
		if crashed {
			crashes++
		}
	}
	if err := r.Start(ctx); err != nil {
		s.load.stop()
		return err
	}
	err := sleep(ctx, min(s.c.opts.duration/4, 3*time.Second))
	s.load.stop()
	s.note("the relay died %d times between the events file's fsync and marking the events sent, each after %d publishing rounds", crashes, crashAfterRounds)
	return err
}

// infoLog turns phonesd's log up to info, where the JetStream sink reports
// the copies the broker dropped.
const infoLog = "PHONES_LOG_LEVEL=info"

// droppedCopies sums what phonesd's log reports of the copies JetStream
// dropped by Nats-Msg-Id: the events published again after a crash.
func droppedCopies(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return "JetStream's dropped copies unknown: " + err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var rounds, copies int
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte("JetStream dropped events it already held")) {
			continue
		}
		var line struct {
			Duplicates int `json:"duplicates"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			rounds++
			copies += line.Duplicates
		}
	}
	return fmt.Sprintf("phonesd published %d events again in %d rounds after the crashes, and JetStream dropped each copy (Nats-Msg-Id)", copies, rounds)
}

// driveReplicas runs three replicas on one database and kills each once
// under load, the one delivering the events first.
func driveReplicas(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	defer s.load.stop()
	gap := s.c.opts.duration / time.Duration(len(s.replicas)+1)
	order := s.killOrder()
	st := restartStats{describe: "replicas killed, each once"}
	for _, i := range order {
		if err := sleep(ctx, gap); err != nil {
			return err
		}
		r := s.replicas[i]
		r.Kill()
		began := time.Now()
		if err := r.Start(ctx); err != nil {
			return err
		}
		st.add(time.Since(began))
	}
	s.note("%s, the relay's lease holder first (%s)", st.String(), s.replicas[order[0]].Name)
	return sleep(ctx, gap)
}

// killOrder puts first the replica whose events file grows: the one
// holding the relay's lease.
func (s *trial) killOrder() []int {
	size := func(r *launch.Process) int64 {
		fi, err := os.Stat(filepath.Join(r.DataDir, "events.jsonl"))
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	before := make([]int64, len(s.replicas))
	for i, r := range s.replicas {
		before[i] = size(r)
	}
	time.Sleep(time.Second)
	order := make([]int, len(s.replicas))
	for i := range order {
		order[i] = i
	}
	for i, r := range s.replicas {
		if size(r) > before[i] {
			order = append([]int{i}, slices.DeleteFunc(order, func(j int) bool { return j == i })...)
			break
		}
	}
	return order
}

// inFlightMargin is how long before SIGTERM an update must have been
// written for the loss of its connection to count as a violation: one
// written just before may still sit unread in the socket, and Go's Shutdown
// closes a connection whose next request it has not read yet, as a client
// of any HTTP/1.1 server must expect. A create needs no such margin: its
// retry tells whether the service had it.
const inFlightMargin = 20 * time.Millisecond

// driveSigterm sends SIGTERM under load: requests in flight must finish
// with an answer, phonesd must exit 0 within 25s, and nothing acknowledged
// may be lost.
func driveSigterm(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	if err := sleep(ctx, s.c.opts.duration); err != nil {
		s.load.stop()
		return err
	}
	r := s.replicas[0]
	signalled := time.Now()
	took, code, err := r.Terminate()
	s.load.stop()
	if err != nil {
		s.violate("sigterm", "%v", err)
	}
	if took > 25*time.Second {
		s.violate("sigterm", "phonesd exited %.1fs after SIGTERM; want under 25s", took.Seconds())
	}
	if code != 0 {
		s.violate("exit", "phonesd exited with status %d after SIGTERM; want 0\n%s", code, r.LogTail())
	}
	// In flight: written before the signal, answered (or not) after it.
	inFlight := func(wrote, end time.Time) bool {
		return !wrote.IsZero() && wrote.Before(signalled) && end.After(signalled)
	}
	fates := map[string]int{}
	creates, updates := s.ledger.snapshot()
	var cut []*createEntry
	for _, e := range creates {
		if !inFlight(e.Wrote, e.End) {
			continue
		}
		fates[fate(e.attempt)]++
		if e.Err != "" {
			cut = append(cut, e)
		}
	}
	for _, u := range updates {
		if !inFlight(u.Wrote, u.End) {
			continue
		}
		fates[fate(u.attempt)]++
		if u.Err != "" && u.Wrote.Before(signalled.Add(-inFlightMargin)) {
			s.violate("in-flight", "update #%d of phone %d was in flight at SIGTERM (written %s before it) and got %s", u.Seq, u.PhoneID, signalled.Sub(u.Wrote).Round(time.Millisecond), u.Err)
		}
	}
	var parts []string
	n := 0
	for _, f := range slices.Sorted(maps.Keys(fates)) {
		parts = append(parts, fmt.Sprintf("%d×%s", fates[f], f))
		n += fates[f]
	}
	s.note("exit %.2fs after SIGTERM with status %d; %d requests in flight: %s", took.Seconds(), code, n, strings.Join(parts, ", "))
	// A create whose connection was cut, yet whose phone was committed
	// before its retry, was being served: its answer was lost at shutdown.
	s.checks = append(s.checks, func(o observed) {
		served := 0
		for _, e := range cut {
			if e.Retry == nil || e.Retry.Class != classOK {
				continue
			}
			if at, ok := o.Created[e.Retry.ID]; ok && at.Before(e.Retry.At.Truncate(time.Millisecond)) {
				served++
				s.violate("in-flight", "%s: in flight at SIGTERM (written %s before it), committed at %s, yet its connection was closed without the answer", describe(e), signalled.Sub(e.Wrote).Round(time.Millisecond), at.UTC().Format("15:04:05.000"))
			}
		}
		if len(cut) > 0 && served == 0 {
			s.note("%d of the creates in flight lost their connection before phonesd read them: none had been committed before its retry", len(cut))
		}
	})
	// The relay flushes at shutdown: what is left waits for the next start.
	if err := r.Start(ctx); err != nil {
		return err
	}
	s.note("outbox pending at the next start: %d", s.pending())
	return nil
}

// fate names an answer for a tally: its status, or its transport error.
func fate(a attempt) string {
	if a.Err != "" {
		return a.Err
	}
	return strconv.Itoa(a.Status)
}

// normalRate is the steady create rate of the normal client beside the
// hostile ones.
const normalRate = 20

// driveHostile measures a normal client sending creates at a steady rate,
// first alone, then while the hostile clients run against the same phonesd.
// Its p99 under attack must stay under --p99; with --short the numbers are
// only reported, since on a small box shared with other work the p99 of a
// few hundred requests moves with the box's own noise (the figure alone
// shows how much).
func driveHostile(ctx context.Context, s *trial) error {
	slow := 100
	if !s.c.opts.short {
		slow = 300
	}
	token := s.c.tokens[tokenKey{hostileTenant, 0}]
	return s.besideNormalClient(ctx, "hostile clients", func(addr string, stop <-chan struct{}) []*hostileStat {
		return startHostile(addr, token, slow, stop).wait()
	})
}

// latencies describes a normal client's latencies.
func latencies(l *latency.Summary) string {
	return fmt.Sprintf("%d creates at %d/s, p50 %.1fms, p99 %.1fms, max %.1fms", l.Count(), normalRate, ms(l.Quantile(0.5)), ms(l.Quantile(0.99)), ms(l.Max()))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// secondExitLimit is how soon a second phonesd on a data directory in use
// must exit.
const secondExitLimit = time.Second

// driveSecondOnDataDir starts, at even intervals under load, a second
// phonesd on the running one's data directory, with the same variables and
// an address of its own: each must exit within secondExitLimit with status
// 1 and one line naming the directory and the first's pid, while the first
// serves on. The common checks then find every event once in the file.
func driveSecondOnDataDir(ctx context.Context, s *trial) error {
	if err := s.startAll(ctx); err != nil {
		return err
	}
	s.load.start()
	defer s.load.stop()
	tries := s.c.opts.kills
	gap := s.c.opts.duration / time.Duration(tries+1)
	first := s.replicas[0]
	var took []time.Duration
	var line string
	for i := range tries {
		if err := sleep(ctx, gap); err != nil {
			return err
		}
		second, err := replicaOn(fmt.Sprintf("%s-second-%d", first.Name, i+1), s.c.bin, first.DataDir, s.env)
		if err != nil {
			return err
		}
		second.LogPath = filepath.Join(s.dir, second.Name+".log")
		began := time.Now()
		if err := second.Launch(); err != nil {
			return err
		}
		select {
		case <-second.Exited():
		case <-time.After(10 * time.Second):
			second.Kill()
		}
		took = append(took, time.Since(began))
		b, err := os.ReadFile(second.LogPath)
		if err != nil {
			return err
		}
		// The first line is the launcher's own.
		_, out, _ := strings.Cut(string(b), "\n")
		line = strings.TrimSpace(out)
		pid := "pid " + strconv.Itoa(first.PID())
		switch {
		case second.ExitCode() != 1:
			s.violate("datadir", "%s exited with status %d after %s; want 1\n%s", second.Name, second.ExitCode(), took[i].Round(time.Millisecond), out)
		case took[i] > secondExitLimit:
			s.violate("datadir", "%s exited after %s; want within %s", second.Name, took[i].Round(time.Millisecond), secondExitLimit)
		case strings.Count(out, "\n") != 1 || !strings.Contains(out, first.DataDir) || !strings.Contains(out, pid):
			s.violate("datadir", "%s wrote %q; want one line naming %s and %s", second.Name, out, first.DataDir, pid)
		}
		if !first.Running() {
			return fmt.Errorf("%s exited beside %s\n%s", first.Name, second.Name, first.LogTail())
		}
	}
	longest := slices.Max(took)
	var total time.Duration
	for _, d := range took {
		total += d
	}
	s.note("%d second phonesds on the data directory exited in %.0fms on average, %.0fms at most; the last said: %s",
		len(took), ms(total/time.Duration(len(took))), ms(longest), line)
	return sleep(ctx, gap)
}
