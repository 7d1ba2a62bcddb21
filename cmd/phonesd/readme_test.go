//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// The README's blocks marked <!-- readme-test: NAME --> are run as they are
// written, but for what would collide with other runs on a shared machine:
// the ports 8080 and 8081 become free ones (phonesd's through PHONES_ADDR,
// which the blocks leave at its default, and every "127.0.0.1:8080" and
// "127.0.0.1:8081" of their text), the database is one of the test's own,
// and the data directory and the NATS stream are the test's through the
// variables the blocks leave unset.

// TestREADMEPostgreSQL runs "Running with PostgreSQL": the issuer and
// phonesd on a new database, then the create of a second shell.
func TestREADMEPostgreSQL(t *testing.T) {
	db := pgtest.Name(t)
	addr, issuerAddr := freeAddr(t), freeAddr(t)
	moves := []move{
		{"127.0.0.1:8080", addr},
		{"127.0.0.1:8081", issuerAddr},
		{"-U postgres phonesd\n", "-U postgres " + db + "\n"},
		{"5432/phonesd?", "5432/" + db + "?"},
	}
	dataDir := t.TempDir()
	startBlock(t, readmeBlock(t, "postgres", moves), "PHONES_ADDR="+addr, "PHONES_DATA_DIR="+dataDir)
	waitReady(t, addr)
	id := createdByBlock(t, readmeBlock(t, "postgres-create", moves), "PHONES_DATA_DIR="+dataDir)
	s := &phonesd{t: t, dataDir: dataDir}
	for _, ev := range s.events(1) {
		if eventPhoneID(ev) == id {
			return
		}
	}
	t.Errorf("no event for phone %d in the events file", id)
}

// TestREADMENATS runs "Running with NATS JetStream": phonesd in development
// mode with its events on NATS, then the create of a second shell.
func TestREADMENATS(t *testing.T) {
	stream := natstest.New(t)
	addr := freeAddr(t)
	moves := []move{{"127.0.0.1:8080", addr}}
	dataDir := t.TempDir()
	startBlock(t, readmeBlock(t, "nats", moves), "PHONES_ADDR="+addr, "PHONES_DATA_DIR="+dataDir,
		"PHONES_NATS_STREAM="+stream.Name, "PHONES_NATS_SUBJECT_PREFIX="+stream.Prefix)
	waitReady(t, addr)
	id := createdByBlock(t, readmeBlock(t, "nats-create", moves), "PHONES_DATA_DIR="+dataDir)
	msgs := stream.WaitMessages(t, 1)
	var ev map[string]any
	if err := json.Unmarshal(msgs[0].Data, &ev); err != nil || eventPhoneID(ev) != id || msgs[0].Subject != stream.Prefix+".audit.phone_creation-1" {
		t.Errorf("message on %s: %s; want the event of phone %d", msgs[0].Subject, msgs[0].Data, id)
	}
}

// move replaces a text of a README block by another.
type move struct{ from, to string }

// readmeBlock returns the fenced block that follows <!-- readme-test: name -->
// in the README, with moves applied; each must apply at least once or not
// at all to every block of the test, so a README that changes a port or
// name fails here instead of silently using the shared one.
func readmeBlock(t *testing.T, name string, moves []move) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- readme-test: " + regexp.QuoteMeta(name) + " -->\n```sh\n(.*?)```\n")
	m := re.FindSubmatch(readme)
	if m == nil {
		t.Fatalf("README.md has no block marked <!-- readme-test: %s --> followed by a ```sh fence", name)
	}
	block := string(m[1])
	for _, mv := range moves {
		block = strings.ReplaceAll(block, mv.from, mv.to)
	}
	for _, shared := range []string{"127.0.0.1:8080", "127.0.0.1:8081", "postgres phonesd\n", "5432/phonesd?"} {
		if strings.Contains(block, shared) {
			t.Fatalf("block %s still names %q after the test's moves:\n%s", name, shared, block)
		}
	}
	return block
}

// startBlock runs block in bash from the repository's root, as pasting it
// into a terminal would (no -e: every line runs), in a process group of its
// own, with the test's environment and env on top. When the test ends, the
// whole group gets SIGTERM, as Ctrl-C and kill %1 would stop it, and
// SIGKILL if it lingers.
func startBlock(t *testing.T, block string, env ...string) {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", block)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Reaped as soon as it exits: a zombie would still count in its group.
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		deadline := time.Now().Add(45 * time.Second)
		for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if syscall.Kill(-pgid, 0) == nil {
			t.Errorf("the block's processes outlived SIGTERM by 45s; killed")
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		<-exited
		if t.Failed() {
			printed, _ := os.ReadFile(out.Name())
			t.Logf("the block printed:\n%s", printed)
		}
		out.Close()
	})
}

// waitReady waits for the phonesd of a block to answer /readyz: the first
// go run compiles it, which takes a while on a busy machine.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("phonesd not ready on %s after 5 minutes", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// createdByBlock runs a block that creates a phone and returns the id it
// printed: the body of a 200 is {"id": n}, and only a 200's.
func createdByBlock(t *testing.T, block string, env ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", block)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	var created struct {
		ID int64 `json:"id"`
	}
	body := strings.TrimSpace(string(out))
	if json.Unmarshal([]byte(body), &created) != nil || created.ID <= 0 || !regexp.MustCompile(`^\{"id":\d+\}$`).MatchString(body) {
		t.Fatalf("the block printed %q (stderr %q); want {\"id\": n}", body, stderr.String())
	}
	return created.ID
}

// eventPhoneID is the phone id of an event's object.
func eventPhoneID(ev map[string]any) int64 {
	data, _ := ev["data"].(map[string]any)
	object, _ := data["object"].(map[string]any)
	id, _ := object["id"].(float64)
	return int64(id)
}
