package main

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/phonesd/phonesd/internal/sink/jetstream"
	"github.com/phonesd/phonesd/internal/testkit/natstest"
)

// TestNATSClusterReplicatedStream points phonesd at every server of a
// three-server JetStream cluster with PHONES_NATS_REPLICAS=3, kills the
// stream's leader with SIGKILL under creates, and checks that the stream
// was created with three replicas and holds every event once, in outbox
// order, after the leader change.
func TestNATSClusterReplicatedStream(t *testing.T) {
	c := natstest.NewCluster(t, 3)
	st := c.NewStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := natsEnv(st, c.URL())
	env["PHONES_NATS_REPLICAS"] = "3"
	s := start(t, env)
	for i := range 10 {
		createdID(t, s.create(1, phoneBody(i)))
	}
	st.WaitMessages(t, 10)
	if info := st.Info(t); info.Config.Replicas != 3 {
		t.Errorf("stream created with %d replicas; want 3", info.Config.Replicas)
	}
	if !strings.Contains(s.logs.String(), `"msg":"JetStream stream created"`) || !strings.Contains(s.logs.String(), `"replicas":3`) {
		t.Errorf("the start does not report the stream's 3 replicas:\n%s", s.logs.String())
	}

	leader, err := st.Leader(ctx)
	if err != nil || c.Server(leader) == nil {
		t.Fatalf("stream leader %q, %v; want one of the cluster's servers", leader, err)
	}
	if err := c.Server(leader).Kill(); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 20; i++ {
		createdID(t, s.create(1, phoneBody(i)))
	}
	rows := waitDrained(t, s.dataDir, s.databaseURL, 30*time.Second)
	if err := c.Server(leader).Start(ctx); err != nil {
		t.Fatal(err)
	}
	checkStreamMatchesOutbox(t, st, rows)
}

// TestNATSReportsExistingStreamReplicas starts phonesd asking for three
// replicas on a stream that exists with one: the start reports the
// stream's count and warns, and the stream is left as it is.
func TestNATSReportsExistingStreamReplicas(t *testing.T) {
	st := natstest.New(t)
	st.Create(t, natsjs.StreamConfig{Subjects: []string{st.Prefix + ".>"}})
	env := natsEnv(st, st.URL)
	env["PHONES_NATS_REPLICAS"] = "3"
	s := start(t, env)
	logs := s.logs.String()
	if !strings.Contains(logs, `"msg":"JetStream stream found"`) || !strings.Contains(logs, `"replicas":1`) {
		t.Errorf("the start does not report the existing stream's replica count:\n%s", logs)
	}
	if !strings.Contains(logs, "fewer replicas than configured") {
		t.Errorf("no warning that the stream has fewer replicas than PHONES_NATS_REPLICAS:\n%s", logs)
	}
	if info := st.Info(t); info.Config.Replicas != 1 {
		t.Errorf("the existing stream now has %d replicas; want it unchanged, 1", info.Config.Replicas)
	}
}

// TestNATSAdvertisedServerGetsNoCredentials gives phonesd the first server
// of a two-server cluster by a nats:// URL with a user and password, on
// loopback, so without TLS; the second server advertises to clients an
// address where an impostor listens. nats.go would add that address to its
// pool with the configured user and password, and send them there in
// clear text once the first server died. phonesd must keep to the server
// it was given: the impostor hears nothing while the first server is down
// (five reconnect rounds), and phonesd reconnects to it once it is back
// and delivers there.
func TestNATSAdvertisedServerGetsNoCredentials(t *testing.T) {
	impostor, err := natstest.StartImpostor("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { impostor.Close() })
	c := natstest.NewClusterWith(t, 2, natstest.ClusterOptions{
		User: "phonesd", Password: "pw-not-for-impostors", Advertise: map[int]string{1: impostor.Addr()},
	})
	first := c.Servers[0]
	st := c.NewStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The test means something only if the first server's clients learn
	// the advertised address.
	nc, err := nats.Connect(first.URL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); !advertises(nc, impostor.Addr()); {
		if time.Now().After(deadline) {
			t.Fatalf("clients of %s never learnt the advertised %s: discovered %v", first.Name, impostor.Addr(), nc.DiscoveredServers())
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc.Close()

	s := start(t, natsEnv(st, first.URL()))
	createdID(t, s.create(1, okBody))
	st.WaitMessages(t, 1)
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	s.waitLogged("NATS connection lost", 10*time.Second)
	select {
	case <-impostor.Heard():
		t.Fatalf("phonesd connected to the address the second server advertises, and sent %q", impostor.Received())
	case <-time.After(5 * jetstream.DefaultReconnectWait):
	}
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	s.waitLogged("NATS reconnected", 30*time.Second)
	createdID(t, s.create(1, phoneBody(2)))
	waitDrained(t, s.dataDir, s.databaseURL, 30*time.Second)
}

// advertises reports whether nc has learnt of a server at addr.
func advertises(nc *nats.Conn, addr string) bool {
	for _, d := range nc.DiscoveredServers() {
		if u, err := url.Parse(d); err == nil && u.Host == addr {
			return true
		}
	}
	return false
}
