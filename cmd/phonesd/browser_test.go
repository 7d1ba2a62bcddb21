package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// browser is a headless Chromium driven through chromedriver, with the W3C
// WebDriver protocol (JSON over HTTP), so that a test sees a page as a
// reader's browser renders it, scripts run.
type browser struct {
	t       *testing.T
	session string // base URL of the WebDriver session
}

// startBrowser starts chromedriver on a free loopback port and opens a
// session of Debian's Chromium with a fresh profile. It skips the test when
// either is missing (.ci/run installs both).
func startBrowser(t *testing.T) *browser {
	t.Helper()
	driver, err := exec.LookPath("chromedriver")
	if err != nil {
		t.Skip("chromedriver not found: install Debian's chromium and chromium-driver (.ci/run does)")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not found: install Debian's chromium and chromium-driver (.ci/run does)")
	}
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(driver, "--port="+port)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromedriver: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("chromedriver's log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		var status struct{ Ready bool }
		if err := webDriver(http.MethodGet, base+"/status", nil, &status); err == nil && status.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver not ready after 20s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			// What Chromium needs to run headless here as root, and to stay
			// off a network it cannot reach: without the background-networking
			// flags it keeps trying Google's hosts.
			"args": []string{
				"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--disable-dev-shm-usage", "--window-size=1400,1000", "--user-data-dir=" + t.TempDir(),
			},
		},
	}}}
	var session struct{ SessionID string }
	if err := webDriver(http.MethodPost, base+"/session", caps, &session); err != nil {
		t.Fatalf("open a Chromium session: %v", err)
	}
	b := &browser{t: t, session: base + "/session/" + session.SessionID}
	t.Cleanup(func() { _ = webDriver(http.MethodDelete, b.session, nil, nil) })
	return b
}

// open loads url and waits for its load event.
func (b *browser) open(url string) {
	b.t.Helper()
	if err := webDriver(http.MethodPost, b.session+"/url", map[string]string{"url": url}, nil); err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
}

// eval runs script, the body of a function, in the page and decodes what it
// returns into out.
func (b *browser) eval(script string, out any) {
	b.t.Helper()
	if err := webDriver(http.MethodPost, b.session+"/execute/sync", map[string]any{"script": script, "args": []any{}}, out); err != nil {
		b.t.Fatalf("run script in the page: %v", err)
	}
}

// webDriver sends one WebDriver command and decodes the "value" of its answer.
func webDriver(method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("%s %s: status %d, answer not JSON: %w", method, url, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, answer.Value)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(answer.Value, out)
}
