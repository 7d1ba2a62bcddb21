package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterSurvivesItsLeader makes a stream with three replicas on a
// three-server cluster, kills the stream's leader with SIGKILL, and checks
// that another server takes over, that the killed one comes back, and that
// the stream holds every acknowledged message.
func TestClusterSurvivesItsLeader(t *testing.T) {
	c := NewCluster(t, 3)
	st := c.NewStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st.Create(t, jetstream.StreamConfig{Subjects: []string{st.Prefix + ".>"}, Storage: jetstream.FileStorage, Replicas: 3})

	nc, err := nats.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(pctx, st.Prefix+".x", []byte("m"), jetstream.WithMsgID(st.Prefix+"-"+string(rune('a'+n))))
			pcancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %d: %v", n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	publish(0)
	leader, err := st.Leader(ctx)
	if err != nil || c.Server(leader) == nil {
		t.Fatalf("leader %q, %v; want one of the cluster's servers", leader, err)
	}
	if err := c.Server(leader).Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	publish(1)
	t.Logf("stored again %v after the leader's kill", time.Since(killed))
	if next, err := st.Leader(ctx); err != nil || next == leader || c.Server(next) == nil {
		t.Errorf("leader after the kill: %q, %v; want another of the cluster's servers than %s", next, err, leader)
	}
	if err := c.Server(leader).Start(ctx); err != nil {
		t.Fatal(err)
	}
	publish(2)
	if msgs := st.WaitMessages(t, 3); len(msgs) != 3 {
		t.Errorf("%d messages; want 3", len(msgs))
	}
}
