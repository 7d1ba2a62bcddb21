//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/testkit/natstest"
	"github.com/phonesd/phonesd/internal/testkit/pgtest"
)

// The documentation's shell blocks marked <!-- readme-test: NAME --> (in
// README.md, api/README.md or docs/) are run as they are written, but for
// what would collide with other runs on a shared machine: the ports 8080
// and 8081 become free ones (phonesd's through PHONES_ADDR, which the
// blocks leave at its default, and every "127.0.0.1:8080" and
// "127.0.0.1:8081" of their text), the database is one of the test's own,
// and the data directory and the NATS stream are the test's through the
// variables the blocks leave unset (and "data/" of their text).

// TestREADMETour runs the README's tour in development mode as a reader
// would: phonesd in one shell, whose start prints a token and a create,
// pasted first; then, in a second shell, the tour's create, the list and
// the read, the update with If-Match twice, and the events file. It goes on
// in the same data directory with "Running with NATS JetStream": each
// walkthrough has an account of its own, so no create meets the phone of
// one followed before it (409).
func TestREADMETour(t *testing.T) {
	addr, dataDir := freeAddr(t), t.TempDir()
	moves := []move{{"127.0.0.1:8080", addr}, {"data/events.jsonl", filepath.Join(dataDir, "events.jsonl")}}
	stop, printed := startBlock(t, docBlock(t, "tour", moves), "PHONES_ADDR="+addr, "PHONES_DATA_DIR="+dataDir)
	waitReady(t, addr)
	banner := regexp.MustCompile(`(?s)\nexport TOKEN=\S+\n\ncurl .*?\}'\n`)
	for deadline := time.Now().Add(10 * time.Second); !banner.MatchString(printed()); {
		if time.Now().After(deadline) {
			t.Fatalf("no token and create printed at the start after 10s:\n%s", printed())
		}
		time.Sleep(20 * time.Millisecond)
	}
	createdByBlock(t, banner.FindString(printed()))

	// One shell: the blocks share TOKEN, API and ID.
	second := docBlock(t, "tour-create", moves) + docBlock(t, "tour-read", moves) + docBlock(t, "tour-update", moves)
	out := runBlock(t, second, "PHONES_DATA_DIR="+dataDir)
	m := regexp.MustCompile(`^\{"id":(\d+)\}\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the tour's create printed\n%s\nwant {\"id\":n} first", out)
	}
	id := m[1]
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`\{"items":\[\{"id":` + id + `,"account_id":1001,`),                   // the list
		regexp.MustCompile(`(?m)^HTTP/1.1 200 OK\r?$`),                                           // the read
		regexp.MustCompile(`(?mi)^etag: "1"\r?$`),                                                // its version
		regexp.MustCompile(`\{"id":` + id + `,.*"extension":"ramal 7"`),                          // the update
		regexp.MustCompile(`\{"message":"Phone was changed since it was read: If-Match[^"]*"\}`), // the stale If-Match
	} {
		if !want.MatchString(out) {
			t.Errorf("the tour printed\n%s\nwant a match of %s", out, want)
		}
	}
	if strings.Contains(out, "ramal 8") {
		t.Errorf("the update with a stale If-Match was applied:\n%s", out)
	}

	// The reader runs tail once the relay has delivered the three events
	// (the printed create's, the tour's create and update); so does the test.
	(&phonesd{t: t, dataDir: dataDir}).events(3)
	lines := strings.Split(strings.TrimSpace(runBlock(t, docBlock(t, "tour-events", moves))), "\n")
	var types []string
	for _, line := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil || strconv.FormatInt(eventPhoneID(ev), 10) != id {
			t.Fatalf("tail printed %q; want the events of phone %s", line, id)
		}
		types = append(types, ev["event_type"].(string))
	}
	if want := []string{"phone_creation-1", "phone_change-1"}; !slices.Equal(types, want) {
		t.Errorf("tail printed events %v; want %v", types, want)
	}

	t.Run("then NATS", func(t *testing.T) {
		stream := natstest.New(t)
		stop() // Ctrl-C in the tour's first shell
		addr := freeAddr(t)
		moves := []move{{"127.0.0.1:8080", addr}}
		_, _ = startBlock(t, docBlock(t, "nats", moves), "PHONES_ADDR="+addr, "PHONES_DATA_DIR="+dataDir,
			"PHONES_NATS_STREAM="+stream.Name, "PHONES_NATS_SUBJECT_PREFIX="+stream.Prefix)
		waitReady(t, addr)
		id := createdByBlock(t, docBlock(t, "nats-create", moves), "PHONES_DATA_DIR="+dataDir)
		msgs := stream.WaitMessages(t, 1)
		var ev map[string]any
		if err := json.Unmarshal(msgs[0].Data, &ev); err != nil || eventPhoneID(ev) != id || msgs[0].Subject != stream.Prefix+".audit.phone_creation-1" {
			t.Errorf("message on %s: %s; want the event of phone %d", msgs[0].Subject, msgs[0].Data, id)
		}
	})
}

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
	_, _ = startBlock(t, docBlock(t, "postgres", moves), "PHONES_ADDR="+addr, "PHONES_DATA_DIR="+dataDir)
	waitReady(t, addr)
	id := createdByBlock(t, docBlock(t, "postgres-create", moves), "PHONES_DATA_DIR="+dataDir)
	s := &phonesd{t: t, dataDir: dataDir}
	for _, ev := range s.events(1) {
		if eventPhoneID(ev) == id {
			return
		}
	}
	t.Errorf("no event for phone %d in the events file", id)
}

// move replaces a text of a documentation block by another.
type move struct{ from, to string }

// docBlock returns the fenced block that follows <!-- readme-test: name -->
// in the documentation, with moves applied. The marker must be in exactly
// one file. After the moves no block may name the shared ports, database
// or data directory, so a document that changes a port or name fails here
// instead of silently using the shared one.
func docBlock(t *testing.T, name string, moves []move) string {
	t.Helper()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- readme-test: " + regexp.QuoteMeta(name) + " -->\n```sh\n(.*?)```\n")
	var block, found string
	for _, path := range append([]string{"../../README.md", "../../api/README.md"}, docs...) {
		text, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(text)
		if m == nil {
			continue
		}
		if found != "" {
			t.Fatalf("block %s is marked in %s and in %s", name, found, path)
		}
		block, found = string(m[1]), path
	}
	if found == "" {
		t.Fatalf("no document has a block marked <!-- readme-test: %s --> followed by a ```sh fence", name)
	}
	for _, mv := range moves {
		block = strings.ReplaceAll(block, mv.from, mv.to)
	}
	for _, shared := range []string{"127.0.0.1:8080", "127.0.0.1:8081", "postgres phonesd\n", "5432/phonesd?", " data/"} {
		if strings.Contains(block, shared) {
			t.Fatalf("block %s still names %q after the test's moves:\n%s", name, shared, block)
		}
	}
	return block
}

// startBlock runs block in bash from the repository's root, as pasting it
// into a terminal would (no -e: every line runs), in a process group of its
// own, with the test's environment and env on top. printed returns what it
// has printed so far. stop, and the end of the test if stop was not called,
// sends the whole group SIGTERM, as Ctrl-C and kill %1 would stop it, and
// SIGKILL if it lingers.
func startBlock(t *testing.T, block string, env ...string) (stop func(), printed func() string) {
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
	var once sync.Once
	stop = func() {
		once.Do(func() {
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
		})
	}
	printed = func() string {
		text, _ := os.ReadFile(out.Name())
		return string(text)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("the block printed:\n%s", printed())
		}
		out.Close()
	})
	return stop, printed
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

// runBlock runs a block of a second shell, as startBlock does but to its
// end, and returns what it printed on stdout.
func runBlock(t *testing.T, block string, env ...string) string {
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
	if err != nil || stderr.Len() > 0 {
		t.Logf("the block: %v; stderr:\n%s", err, stderr.String())
	}
	return string(out)
}

// createdByBlock runs a block that creates a phone and returns the id it
// printed: the body of a 200 is {"id": n}, and only a 200's.
func createdByBlock(t *testing.T, block string, env ...string) int64 {
	t.Helper()
	var created struct {
		ID int64 `json:"id"`
	}
	body := strings.TrimSpace(runBlock(t, block, env...))
	if json.Unmarshal([]byte(body), &created) != nil || created.ID <= 0 || !regexp.MustCompile(`^\{"id":\d+\}$`).MatchString(body) {
		t.Fatalf("the block printed %q; want {\"id\": n}", body)
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
