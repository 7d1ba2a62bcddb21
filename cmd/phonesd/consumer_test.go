package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConsumerModule builds api/README.md's example program as an
// integrator would: in a module of its own outside the repository, which
// requires the contract's module alone (through a replace to the local
// api/ folder, as no version of it is published yet). It fails if the
// consumer inherits what the service runs on, then runs the program
// against a phonesd and compares what it prints with the README.
func TestConsumerModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module of its own; run without -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		if os.Getenv("PHONES_TEST_REQUIRE_TOOLS") != "" {
			t.Fatalf("go not found: %v", err)
		}
		t.Skipf("go not found: %v", err)
	}
	readme, err := os.ReadFile("../../api/README.md")
	if err != nil {
		t.Fatal(err)
	}
	program := markedBlock(t, readme, "main.go", "go")
	want := markedBlock(t, readme, "output", "text")
	apiDir, err := filepath.Abs("../../api")
	if err != nil {
		t.Fatal(err)
	}
	apiMod, err := os.ReadFile(filepath.Join(apiDir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	// The consumer declares the oldest Go the contract's module allows.
	goLine := regexp.MustCompile(`(?m)^go \S+$`).Find(apiMod)
	if goLine == nil {
		t.Fatalf("api/go.mod has no go line")
	}

	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/phones\n\n"+string(goLine)+"\n\n"+
		"require github.com/phonesd/phonesd/api v0.0.0\n\n"+
		"replace github.com/phonesd/phonesd/api => "+apiDir+"\n")
	write("main.go", program)
	// GOWORK=off: the repository's go.work must not lend the consumer
	// anything, should the temporary folder lie below it.
	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off")
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				stderr = ee.Stderr
			}
			t.Fatalf("go %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
		}
		return string(out)
	}
	goCmd("mod", "tidy")
	bin := filepath.Join(dir, "phones")
	goCmd("build", "-o", bin, ".")

	// The module graph is checked for the service's engines and for the
	// service's own module. The OpenTelemetry SDK is checked in the
	// package graph only: ogen's go.mod names it as a requirement (for the
	// generator's own instrumentation), so its module is in every ogen
	// user's graph, while no package of it is built into the consumer.
	engines := []string{
		"github.com/jackc/pgx",
		"github.com/nats-io/nats.go",
		"modernc.org/sqlite",
		"gonum.org",
		"github.com/prometheus/client_golang",
	}
	modules := strings.Fields(goCmd("list", "-m", "-f", "{{.Path}}", "all"))
	for _, m := range modules {
		if m == "github.com/phonesd/phonesd" || within(m, engines) != "" {
			t.Errorf("the consumer's module graph holds %s", m)
		}
	}
	notBuilt := append(slices.Clone(engines), "go.opentelemetry.io/otel/sdk")
	for _, p := range strings.Fields(goCmd("list", "-deps", "-f", "{{.ImportPath}}", ".")) {
		if root := within(p, notBuilt); root != "" {
			t.Errorf("the consumer builds in package %s (of %s)", p, root)
		}
	}
	t.Logf("the consumer's module graph: %d modules", len(modules))

	// The second run is the README's "run again": the same lines, the
	// key's first answer replayed.
	s := start(t, nil)
	for _, what := range []string{"the example", "the example run again"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		run := exec.CommandContext(ctx, bin)
		run.Env = append(os.Environ(), "PHONESD_URL="+s.base, "PHONESD_TOKEN="+s.token)
		got, err := run.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, got)
		}
		if string(got) != want {
			t.Fatalf("%s printed\n%s\nwant, as api/README.md says,\n%s", what, got, want)
		}
	}
}

// markedBlock returns the fenced block of the given language that follows
// <!-- consumer-test: name --> in md.
func markedBlock(t *testing.T, md []byte, name, lang string) string {
	t.Helper()
	re := regexp.MustCompile("(?s)<!-- consumer-test: " + regexp.QuoteMeta(name) + " -->\n```" + lang + "\n(.*?)```\n")
	m := re.FindSubmatch(md)
	if m == nil {
		t.Fatalf("api/README.md has no block marked <!-- consumer-test: %s --> followed by a ```%s fence", name, lang)
	}
	return string(m[1])
}

// within returns the first of roots that path is, or lies below as a
// module or package path, or "".
func within(path string, roots []string) string {
	for _, r := range roots {
		if path == r || strings.HasPrefix(path, r+"/") {
			return r
		}
	}
	return ""
}
