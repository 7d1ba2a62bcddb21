package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/phonesd/phonesd/internal/outbox"
	"github.com/phonesd/phonesd/internal/testkit/faultproxy"
	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// natsEnv points phonesd at st's stream and prefix on server.
func natsEnv(st *natstest.Stream, server string) map[string]string {
	return map[string]string{
		"PHONES_EVENTS_URL":          server,
		"PHONES_NATS_STREAM":         st.Name,
		"PHONES_NATS_SUBJECT_PREFIX": st.Prefix,
	}
}

// natsProxy returns st's server through a fault proxy of the test's own.
func natsProxy(t *testing.T, st *natstest.Stream) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(st.URL)
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

// outboxRow is a row of the outbox table, sent or not.
type outboxRow struct {
	seq     int64
	eventID string
	payload []byte
	sent    bool
}

// outboxRows reads the whole outbox of the database in dataDir (SQLite) or
// at databaseURL (PostgreSQL), in outbox order.
func outboxRows(t *testing.T, dataDir, databaseURL string) []outboxRow {
	t.Helper()
	// The delivered position lives beside the relay lease on PostgreSQL,
	// where outbox order is by transaction id, then seq; it is a seq in a
	// table of its own on SQLite.
	const (
		query   = `SELECT seq, event_id, payload, seq <= (SELECT delivered_seq FROM outbox_position) FROM outbox ORDER BY seq`
		pgQuery = `SELECT o.seq, o.event_id::text, o.payload, (o.xid, o.seq) <= (l.position_xid, l.position_seq)
FROM outbox AS o, relay_lease AS l ORDER BY o.xid, o.seq`
	)
	var out []outboxRow
	if databaseURL != "" {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, databaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, pgQuery)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var r outboxRow
			if err := rows.Scan(&r.seq, &r.eventID, &r.payload, &r.sent); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "phones.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.seq, &r.eventID, &r.payload, &r.sent); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitDrained polls until every outbox row is sent, and returns the rows.
func waitDrained(t *testing.T, dataDir, databaseURL string, within time.Duration) []outboxRow {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rows := outboxRows(t, dataDir, databaseURL)
		unsent := 0
		for _, r := range rows {
			if !r.sent {
				unsent++
			}
		}
		if unsent == 0 {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d outbox events still unsent after %v", unsent, len(rows), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkStreamMatchesOutbox fails t unless the stream holds each outbox event
// exactly once, in outbox order, with its event_id as Nats-Msg-Id, its
// payload as body, on the subject of a created phone.
func checkStreamMatchesOutbox(t *testing.T, st *natstest.Stream, rows []outboxRow) {
	t.Helper()
	msgs := st.Messages(t)
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m.MsgID]++
		if seen[m.MsgID] == 2 {
			t.Errorf("event %s is in the stream twice", m.MsgID)
		}
	}
	if len(msgs) != len(rows) {
		t.Fatalf("stream holds %d messages; want %d, one per outbox event", len(msgs), len(rows))
	}
	for i, r := range rows {
		m := msgs[i]
		if m.MsgID != r.eventID {
			t.Fatalf("message %d: Nats-Msg-Id %s; want %s, the outbox event of seq %d (stream out of outbox order)", i, m.MsgID, r.eventID, r.seq)
		}
		if !bytes.Equal(m.Data, r.payload) {
			t.Errorf("message %d: body %s; want the outbox payload %s", i, m.Data, r.payload)
		}
		if want := st.Prefix + ".audit.phone_creation-1"; m.Subject != want {
			t.Errorf("message %d: subject %s; want %s", i, m.Subject, want)
		}
		var env struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(m.Data, &env); err != nil || env.EventID != m.MsgID {
			t.Errorf("message %d: body's event_id %q (%v); want the Nats-Msg-Id %s", i, env.EventID, err, m.MsgID)
		}
	}
}

// readyOutbox returns /readyz's status and its outbox backlog once they
// are as wanted, or as they are after 3 s: /readyz answers from a probe of
// storage at most about a second old.
func readyOutbox(t *testing.T, s *phonesd, wantPending int64) (status int, pending int64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		r := s.do(http.MethodGet, "/readyz", "")
		var body struct {
			Outbox *struct {
				Pending int64 `json:"pending"`
			} `json:"outbox"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil || body.Outbox == nil {
			t.Fatalf("/readyz body %s: no outbox detail", r.body)
		}
		status, pending = r.status, body.Outbox.Pending
		if (status == http.StatusOK && pending == wantPending) || time.Now().After(deadline) {
			return status, pending
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func phoneBody(i int) string {
	return fmt.Sprintf(`{"number": "5555-%04d", "type": "MOBILE"}`, i)
}

func TestNATSDeliversEachEventOnce(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		st := natstest.New(t)
		// The test server has no authorization, so it ignores these; they
		// are here to show they never reach the log.
		u, _ := url.Parse(st.URL)
		u.User = url.UserPassword("phonesd", "pw-never-logged")
		s := b.start(t, natsEnv(st, u.String()))
		const n = 25
		for i := range n {
			createdID(t, s.create(1, phoneBody(i)))
		}
		st.WaitMessages(t, n)
		rows := waitDrained(t, s.dataDir, s.databaseURL, 10*time.Second)
		checkStreamMatchesOutbox(t, st, rows)
		if status, pending := readyOutbox(t, s, 0); status != http.StatusOK || pending != 0 {
			t.Errorf("/readyz: %d with %d pending; want 200 with 0", status, pending)
		}
		if strings.Contains(s.logs.String(), "pw-never-logged") {
			t.Errorf("the log holds the broker password:\n%s", s.logs.String())
		}
		if info := st.Info(t); info.Config.Storage != natsjs.FileStorage || info.Config.Duplicates != 10*time.Minute {
			t.Errorf("stream created with storage %v and duplicate window %v; want file and 10m", info.Config.Storage, info.Config.Duplicates)
		}
	})
}

// TestNATSCarriesTheTrace: the W3C trace context a create ran in travels
// with its event, as the message's traceparent header: the client's own
// when phonesd exports no traces, phonesd's server span in the same trace
// when it does. Without a traceparent, a create belongs to no trace when
// phonesd exports none, and to one of phonesd's own when it does.
func TestNATSCarriesTheTrace(t *testing.T) {
	const clientTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		exactly bool // the header is the client's own
	}{
		{"untraced", nil, true},
		{"traced", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": newOTLPReceiver(t).URL}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := natstest.New(t)
			env := natsEnv(st, st.URL)
			for k, v := range tc.env {
				env[k] = v
			}
			s := start(t, env)
			createdID(t, s.create(1, phoneBody(1), [2]string{"traceparent", clientTrace}))
			createdID(t, s.create(1, phoneBody(2)))
			msgs := st.WaitMessages(t, 2)
			got := msgs[0].TraceParent
			switch {
			case tc.exactly && got != clientTrace:
				t.Errorf("traceparent %q; want the client's %q", got, clientTrace)
			case !tc.exactly && (got[:36] != clientTrace[:36] || got == clientTrace):
				t.Errorf("traceparent %q; want the client's trace under another span, phonesd's", got)
			}
			switch h := msgs[1].TraceParent; {
			case tc.exactly && h != "":
				t.Errorf("a create the client sent outside any trace: traceparent %q; want none", h)
			case !tc.exactly && (h == "" || h[:36] == clientTrace[:36]):
				t.Errorf("a create the client sent outside any trace: traceparent %q; want a trace of phonesd's own", h)
			}
		})
	}
}

func TestNATSOutageKeepsEventsInTheOutbox(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		st := natstest.New(t)
		server, proxy := natsProxy(t, st)
		s := b.start(t, natsEnv(st, server))
		for i := range 3 {
			createdID(t, s.create(1, phoneBody(i)))
		}
		st.WaitMessages(t, 3)
		waitDrained(t, s.dataDir, s.databaseURL, 10*time.Second)

		proxy.Set(faultproxy.Cut)
		const during = 12
		for i := 3; i < 3+during; i++ {
			createdID(t, s.create(1, phoneBody(i)))
		}
		if status, pending := readyOutbox(t, s, during); status != http.StatusOK || pending != during {
			t.Errorf("/readyz during the outage: %d with %d pending; want 200 with %d", status, pending, during)
		}
		if got := st.Count(t); got != 3 {
			t.Errorf("stream holds %d messages during the outage; want 3", got)
		}
		// Every create notified the relay; backing off, it ignored them. The
		// first failure may take until the client notices the cut link or
		// its publish times out.
		failing := func() int { return strings.Count(s.logs.String(), "outbox delivery failing") }
		for deadline := time.Now().Add(20 * time.Second); failing() == 0 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if n := failing(); n != 1 {
			t.Errorf("delivery failure log lines: got %d; want 1 for the whole outage", n)
		}

		proxy.Set(faultproxy.Pass)
		rows := waitDrained(t, s.dataDir, s.databaseURL, 20*time.Second)
		checkStreamMatchesOutbox(t, st, rows)
		if !strings.Contains(s.logs.String(), "outbox delivery recovered") {
			t.Errorf("no recovery logged:\n%s", s.logs.String())
		}
	})
}

func TestNATSRefusesStreamNotCoveringItsSubjects(t *testing.T) {
	st := natstest.New(t)
	st.Create(t, natsjs.StreamConfig{Subjects: []string{st.Prefix + ".other.>"}})
	keys := newTestKeys(t)
	env := map[string]string{
		"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir(),
		"PHONES_JWKS_URL": keys.url, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
	}
	for k, v := range natsEnv(st, st.URL) {
		env[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := run(ctx, []string{"phonesd"}, env, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "PHONES_NATS_STREAM") || !strings.Contains(err.Error(), st.Name) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("run: %v; want one line naming PHONES_NATS_STREAM and the stream", err)
	}
}

func TestNATSConfigurationErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unknown scheme", map[string]string{"PHONES_EVENTS_URL": "amqp://u:pw-secret@broker:5672"}, "PHONES_EVENTS_URL"},
		{"NATS URL with a path", map[string]string{"PHONES_EVENTS_URL": "nats://u:pw-secret@broker:4222/x"}, "PHONES_EVENTS_URL"},
		{"NATS URL without a host", map[string]string{"PHONES_EVENTS_URL": "nats://"}, "PHONES_EVENTS_URL"},
		{"one bad URL of several", map[string]string{"PHONES_EVENTS_URL": "nats://a:4222,http://b:4222"}, "PHONES_EVENTS_URL"},
		{"prefix with a wildcard", map[string]string{"PHONES_EVENTS_URL": "nats://127.0.0.1:4222", "PHONES_NATS_SUBJECT_PREFIX": "accounts.*"}, "PHONES_NATS_SUBJECT_PREFIX"},
		{"stream name with a dot", map[string]string{"PHONES_EVENTS_URL": "nats://127.0.0.1:4222", "PHONES_NATS_STREAM": "ACCOUNTS.EVENTS"}, "PHONES_NATS_STREAM"},
		{"zero duplicate window", map[string]string{"PHONES_EVENTS_URL": "nats://127.0.0.1:4222", "PHONES_NATS_DUPLICATE_WINDOW": "0s"}, "PHONES_NATS_DUPLICATE_WINDOW"},
		{"bad duplicate window", map[string]string{"PHONES_EVENTS_URL": "nats://127.0.0.1:4222", "PHONES_NATS_DUPLICATE_WINDOW": "later"}, "PHONES_NATS_DUPLICATE_WINDOW"},
		{"missing creds file", map[string]string{"PHONES_EVENTS_URL": "nats://127.0.0.1:4222", "PHONES_NATS_CREDS": filepath.Join(dir, "missing.creds")}, "PHONES_NATS_CREDS"},
		{"NATS setting without a NATS URL", map[string]string{"PHONES_NATS_STREAM": "ACCOUNTS_EVENTS"}, "PHONES_NATS_STREAM"},
		{"no replicas", map[string]string{"PHONES_EVENTS_URL": "nats://127.0.0.1:4222", "PHONES_NATS_REPLICAS": "0"}, "PHONES_NATS_REPLICAS"},
		{"more replicas than JetStream allows", map[string]string{"PHONES_EVENTS_URL": "nats://127.0.0.1:4222", "PHONES_NATS_REPLICAS": "6"}, "PHONES_NATS_REPLICAS"},
		{"replicas without a NATS URL", map[string]string{"PHONES_NATS_REPLICAS": "3"}, "PHONES_NATS_REPLICAS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"PHONES_DATA_DIR": dir, "PHONES_ADDR": "127.0.0.1:0"}
			for k, v := range c.env {
				env[k] = v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, []string{"phonesd"}, env, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("run: %v; want one line mentioning %q", err, c.want)
			}
			if strings.Contains(err.Error(), "pw-secret") {
				t.Errorf("run: %v; the error holds the password", err)
			}
		})
	}
}

// process is phonesd running as a process of its own, so that a test can
// kill it as abruptly as a crash does.
type process struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{} // closed when the process has exited
}

// buildPhonesd builds phonesd with its failpoints into a temporary
// directory. It builds with -race when this test binary was, so that the
// packages already compiled for the tests are reused.
func buildPhonesd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "phonesd")
	args := []string{"build", "-tags", "failpoints", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// spawn runs bin with exactly vars as its environment, and kills it when
// the test ends.
func spawn(t *testing.T, bin string, vars map[string]string) *process {
	t.Helper()
	cmd := exec.Command(bin)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start phonesd: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

// kill kills the process, if it still runs, and waits for it to exit.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitReady polls the process's /readyz until it answers 200.
func (p *process) waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("phonesd exited: %v\nlogs:\n%s", p.cmd.ProcessState, p.logs.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 after 30s\nlogs:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postPhone creates a phone without failing the test, for goroutines.
func postPhone(base, token string, account int64, body string) error {
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/accounts/v1/accounts/%d/phones", base, account), strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// serviceEnv is the environment of a phonesd trusting keys, on a free
// address and a data directory of its own, with more on top.
func serviceEnv(t *testing.T, keys *testKeys, more ...map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{
		"PHONES_ADDR": freeAddr(t), "PHONES_DATA_DIR": t.TempDir(),
		"PHONES_JWKS_URL": keys.url, "PHONES_JWT_ISSUER": testIssuer, "PHONES_JWT_AUDIENCE": testAudience,
	}
	for _, m := range more {
		for k, v := range m {
			env[k] = v
		}
	}
	return env
}

func TestNATSLeaseHolderKilledMidRun(t *testing.T) {
	dbURL := pgtest.Database(t)
	st := natstest.New(t)
	bin := buildPhonesd(t)
	keys := newTestKeys(t)
	token := keys.token(t, nil)
	db := map[string]string{"PHONES_DATABASE_URL": dbURL}

	// A starts alone and so holds the lease: the first event is its.
	envA := serviceEnv(t, keys, db, natsEnv(st, st.URL))
	a := spawn(t, bin, envA)
	a.waitReady(t, envA["PHONES_ADDR"])
	if err := postPhone("http://"+envA["PHONES_ADDR"], token, 1, phoneBody(0)); err != nil {
		t.Fatalf("create through A: %v", err)
	}
	st.WaitMessages(t, 1)

	b := startWith(t, serviceEnv(t, keys, db, natsEnv(st, st.URL)))
	// Creates go through B, whose relay stands by: A delivers them at its
	// polls until it is killed, with creates still coming.
	stop := make(chan struct{})
	var made atomic.Int64
	created := make(chan int)
	go func() {
		defer func() { created <- int(made.Load()) }()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := postPhone(b.base, token, 1, phoneBody(i)); err != nil {
				t.Errorf("create %d through B: %v", i, err)
				return
			}
			made.Add(1)
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for st.Count(t) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("A delivered nothing of B's creates in 15s\nA's logs:\n%s", a.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.kill()
	killed := time.Now()
	atKill := st.Count(t)
	// Creates while no relay delivers: B's relay takes the lease at its
	// next poll, up to a second away.
	for atKillMade, deadline := made.Load(), time.Now().Add(15*time.Second); made.Load() < atKillMade+10; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d creates through B in the 15s after A was killed; want 10", made.Load()-atKillMade)
		}
	}
	close(stop)
	n := <-created
	if n == 0 {
		t.Fatal("no create went through B")
	}

	rows := waitDrained(t, "", dbURL, 15*time.Second)
	t.Logf("A delivered %d events before it was killed; B delivered the other %d within %v", atKill, uint64(len(rows))-atKill, time.Since(killed).Round(time.Millisecond))
	if len(rows) != n+1 {
		t.Fatalf("%d outbox events; want %d", len(rows), n+1)
	}
	checkStreamMatchesOutbox(t, st, rows)
}

func TestNATSCrashBetweenAckAndMarkIsDeduplicated(t *testing.T) {
	st := natstest.New(t)
	server, proxy := natsProxy(t, st)
	bin := buildPhonesd(t)
	keys := newTestKeys(t)
	// The broker is away while the phone is created, so that the failpoint
	// fires only once the HTTP answer is out, when it comes back.
	proxy.Set(faultproxy.Cut)
	env := serviceEnv(t, keys, natsEnv(st, server), map[string]string{"PHONES_FAILPOINTS": "relay-after-publish"})
	p := spawn(t, bin, env)
	p.waitReady(t, env["PHONES_ADDR"])
	if err := postPhone("http://"+env["PHONES_ADDR"], keys.token(t, nil), 1, phoneBody(0)); err != nil {
		t.Fatalf("create: %v", err)
	}
	proxy.Set(faultproxy.Pass)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("phonesd did not reach the failpoint in 20s\nlogs:\n%s", p.logs.String())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != outbox.FailpointExitCode {
		t.Fatalf("exit code %d; want %d, the failpoint's\nlogs:\n%s", code, outbox.FailpointExitCode, p.logs.String())
	}
	rows := outboxRows(t, env["PHONES_DATA_DIR"], "")
	if len(rows) != 1 || rows[0].sent {
		t.Fatalf("outbox after the crash: %+v; want one unsent event", rows)
	}
	if msgs := st.Messages(t); len(msgs) != 1 || msgs[0].MsgID != rows[0].eventID {
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.MsgID
		}
		t.Fatalf("stream after the crash holds events %q; want only %s, acknowledged before the crash", ids, rows[0].eventID)
	}

	// The restart publishes it again, and JetStream drops the copy.
	delete(env, "PHONES_FAILPOINTS")
	env["PHONES_EVENTS_URL"] = st.URL
	s := startWith(t, env)
	rows = waitDrained(t, s.dataDir, "", 15*time.Second)
	checkStreamMatchesOutbox(t, st, rows)
	if !strings.Contains(s.logs.String(), `"duplicates":1`) {
		t.Errorf("the restart did not report JetStream dropping the duplicate:\n%s", s.logs.String())
	}
}

// TestNATSStartAndStopLog: a start logs "NATS connected" once, and a clean
// stop (SIGTERM) logs no lost connection.
func TestNATSStartAndStopLog(t *testing.T) {
	st := natstest.New(t)
	s := start(t, natsEnv(st, st.URL))
	if err := s.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	logs := s.logs.String()
	if n := strings.Count(logs, `"msg":"NATS connected"`); n != 1 {
		t.Errorf("%q logged %d times; want 1:\n%s", "NATS connected", n, logs)
	}
	if strings.Contains(logs, "NATS connection lost") {
		t.Errorf("a clean stop logged a lost connection:\n%s", logs)
	}
}
