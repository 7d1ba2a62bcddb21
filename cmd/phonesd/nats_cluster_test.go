package main

import (
	"context"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

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
