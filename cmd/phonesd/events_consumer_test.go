package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/phonesd/phonesd/internal/testkit/natstest"
)

// TestAPIREADMEConsumer builds the example consumer of api/README.md as
// written and runs it against phonesd's events on JetStream: it must print
// each event once, in order, and pass over an event stored a second time,
// as JetStream does when a retry comes after the duplicate window.
func TestAPIREADMEConsumer(t *testing.T) {
	st := natstest.New(t)
	env := natsEnv(st, st.URL)
	env["PHONES_NATS_DUPLICATE_WINDOW"] = "500ms"
	s := start(t, env)
	first := createdID(t, s.create(5, `{"number": "91234-5678", "type": "MOBILE"}`))
	createdID(t, s.create(5, `{"number": "5555-0001", "type": "RESIDENTIAL"}`))
	if r := s.patch(5, first, `{"active": false}`); r.status != 200 {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	msgs := st.WaitMessages(t, 3)
	redeliver(t, st, msgs[0])

	bin := buildExample(t, "consumer")
	cmd := exec.Command(bin, "-server", st.URL, "-stream", st.Name, "-prefix", st.Prefix)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Errorf("the consumer, interrupted: %v; want a clean exit\n%s", err, stderr.String())
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	want := []*regexp.Regexp{
		regexp.MustCompile(`^\S+Z phone_creation-1: phone \d+ of account 5 of ` + testTenant + `, MOBILE 91234-5678, active true$`),
		regexp.MustCompile(`^\S+Z phone_creation-1: phone \d+ of account 5 of ` + testTenant + `, RESIDENTIAL 5555-0001, active true$`),
		regexp.MustCompile(`^\S+Z phone_change-1: phone \d+ of account 5 of ` + testTenant + `, MOBILE 91234-5678, active false$`),
	}
	deadline := time.After(30 * time.Second)
	for i, re := range want {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the consumer stopped after %d lines; want %d\nstderr:\n%s", i, len(want), stderr.String())
			}
			if !re.MatchString(line) {
				t.Errorf("line %d: %q; want %s", i, line, re)
			}
		case <-deadline:
			t.Fatalf("%d lines after 30s; want %d\nstderr:\n%s", i, len(want), stderr.String())
		}
	}
	again := msgs[0].MsgID + " again: handled already"
	for !strings.Contains(stderr.String(), again) {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the consumer stopped; stderr:\n%s", stderr.String())
			}
			t.Errorf("an event printed twice: %q", line)
		case <-deadline:
			t.Fatalf("no %q after 30s; stderr:\n%s", again, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redeliver stores m in the stream again, headers and all, once the
// stream's duplicate window no longer hides it: an event delivered twice.
func redeliver(t *testing.T, st *natstest.Stream, m natstest.Message) {
	t.Helper()
	nc, err := nats.Connect(st.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		if err != nil {
			t.Fatalf("publish %s again: %v", m.MsgID, err)
		}
		if !ack.Duplicate {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s still a duplicate after 20s", m.MsgID)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// buildExample builds the Go program of api/README.md marked
// <!-- example-test: name -->, as a reader would paste it into a file of
// their own, against this repository's modules, and returns the binary.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	readme, err := os.ReadFile("../../api/README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- example-test: " + regexp.QuoteMeta(name) + " -->\n```go\n(.*?)```\n").FindSubmatch(readme)
	if m == nil {
		t.Fatalf("api/README.md has no block marked <!-- example-test: %s --> followed by a ```go fence", name)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, m[1], 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, src)
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example %s of api/README.md: %v\n%s", name, err, out)
	}
	return bin
}
