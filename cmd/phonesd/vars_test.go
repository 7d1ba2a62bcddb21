package main

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestREADMEConfigurationTable checks the README's table of variables
// against the table the help prints, row by row.
func TestREADMEConfigurationTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "\n## Configuration\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var rows [][3]string // name, default, meaning
	for line := range strings.SplitSeq(section, "\n") {
		if !strings.HasPrefix(line, "| `PHONES_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 {
			t.Fatalf("README: want three cells in %q", line)
		}
		rows = append(rows, [3]string{strings.Trim(strings.TrimSpace(cells[0]), "`"), strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])})
	}
	vars := variables()
	if len(rows) != len(vars) {
		t.Errorf("the README's configuration table has %d rows; want one per variable, %d", len(rows), len(vars))
	}
	for i, v := range vars {
		if i >= len(rows) || rows[i][0] != v.name {
			t.Fatalf("row %d of the README's configuration table is not %s (same order as vars.go)", i+1, v.name)
		}
		if got, want := rows[i][1], v.defaultText(); got != want {
			t.Errorf("README: %s defaults to %q; want %q", v.name, got, want)
		}
		if got, want := rows[i][2], v.meaning; got != want {
			t.Errorf("README: %s means %q; want %q", v.name, got, want)
		}
	}
}

// TestVariableDefaults checks each default of the table against loadConfig:
// setting a variable to its documented default must change nothing. It
// does so in development mode, in production mode, and in production mode
// with NATS, since some variables are only valid in one of them.
func TestVariableDefaults(t *testing.T) {
	dataDir, err := filepath.Abs("data")
	if err != nil {
		t.Fatal(err)
	}
	production := map[string]string{"PHONES_JWKS_URL": "https://issuer.test/jwks.json", "PHONES_JWT_ISSUER": "i", "PHONES_JWT_AUDIENCE": "a"}
	withNATS := map[string]string{"PHONES_EVENTS_URL": "nats://127.0.0.1:4222"}
	for k, v := range production {
		withNATS[k] = v
	}
	modes := []struct {
		name string
		env  map[string]string
		dev  bool
	}{{"development mode", map[string]string{}, true}, {"production mode", production, false}, {"production mode with NATS", withNATS, false}}
	for _, v := range variables() {
		if v.def == "" {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			checked := 0
			for _, m := range modes {
				if _, set := m.env[v.name]; set {
					continue
				}
				want, err := loadConfig(func(k string) string { return m.env[k] })
				if err != nil {
					t.Fatalf("%s: %v", m.name, err)
				}
				def := v.def
				if m.dev && v.devDef != "" {
					def = v.devDef
				}
				def = strings.ReplaceAll(def, "<data dir>", dataDir)
				got, err := loadConfig(func(k string) string {
					if k == v.name {
						return def
					}
					return m.env[k]
				})
				if err != nil {
					continue // not valid in this mode, as for PHONES_NATS_STREAM without NATS
				}
				checked++
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: %s=%s gives\n%+v\nunset gives\n%+v", m.name, v.name, def, got, want)
				}
			}
			if checked == 0 {
				t.Errorf("loadConfig refuses %s=%s in every mode", v.name, v.def)
			}
		})
	}
}

// TestEveryVariableIsInTheTable finds the PHONES_ names the service's code
// reads (its string constants that are exactly a name) and checks that the
// table has each, so that a new variable cannot go undocumented.
func TestEveryVariableIsInTheTable(t *testing.T) {
	known := map[string]bool{}
	for _, v := range variables() {
		known[v.name] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`^PHONES_[A-Z0-9_]+$`)
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err == nil && name.MatchString(s) && !known[s] && !notServiceVariable(s) {
				t.Errorf("%s reads %s, which the table of variables (vars.go) lacks", fset.Position(lit.Pos()), s)
			}
			return true
		})
	}
}

func TestHelp(t *testing.T) {
	var first string
	for _, arg := range []string{"help", "-h", "--help"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"phonesd", arg}, nil, &out, &bytes.Buffer{}); err != nil {
			t.Fatalf("phonesd %s: %v", arg, err)
		}
		if first == "" {
			first = out.String()
		} else if out.String() != first {
			t.Errorf("phonesd %s prints another help than phonesd help", arg)
		}
	}
	for _, v := range variables() {
		want := v.name + "\n"
		if def := v.defaultText(); def != "" {
			want = v.name + "  (default: " + plainText(def) + ")\n"
		}
		if !strings.Contains(first, "\n  "+want) {
			t.Errorf("help lacks the line %q", want)
		}
	}
	if err := run(context.Background(), []string{"phonesd", "hepl"}, nil, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "phonesd help") {
		t.Errorf("an unknown command: %v; want an error that points to phonesd help", err)
	}
}

// TestUnknownVariableWarning starts phonesd with a misspelt variable and
// checks the warning names the variable it meant; the variables of tests
// and tools are no typo.
func TestUnknownVariableWarning(t *testing.T) {
	s := start(t, map[string]string{"PHONES_ADRR": "127.0.0.1:1", "PHONES_TEST_DATABASE_URL": "x", "PHONES_FAILPOINTS": ""})
	logs := s.logs.String()
	if !regexp.MustCompile(`"msg":"unknown variable ignored","variable":"PHONES_ADRR","closest_known":"PHONES_ADDR"`).MatchString(logs) {
		t.Errorf("no warning naming PHONES_ADRR and PHONES_ADDR in the log:\n%s", logs)
	}
	if strings.Count(logs, "unknown variable") != 1 {
		t.Errorf("want exactly one unknown-variable warning:\n%s", logs)
	}
}

// TestDerivedDefaultsInDocs checks the figures the documents spell for the
// back-pressure defaults, and for those derived from them, against what
// vars.go computes, so that changing a default or its derivation fails
// here until the prose follows. Each phrase is looked for with the text's
// line breaks as spaces.
func TestDerivedDefaultsInDocs(t *testing.T) {
	perTenant := perTenantDefault(defaultMaxInFlight)
	burst := rateBurstDefault(defaultRateLimit)
	for _, c := range []struct{ doc, phrase string }{
		{"docs/api.md", fmt.Sprintf("authenticated API requests at once (%d)", defaultMaxInFlight)},
		{"docs/api.md", fmt.Sprintf("(a quarter of `PHONES_MAX_IN_FLIGHT`, %d)", perTenant)},
		{"docs/api.md", fmt.Sprintf("`PHONES_RATE_LIMIT` requests a second (%d in production", defaultRateLimit)},
		{"docs/api.md", fmt.Sprintf("bursts of up to `PHONES_RATE_BURST` (%d)", burst)},
		{"docs/api.md", fmt.Sprintf("`RateLimit-Policy: \"tenant\";q=%d;", burst)},
		{"docs/api.md", fmt.Sprintf("`RateLimit: \"tenant\";r=%d;", burst-1)}, // after one request
		{"docs/api.md", fmt.Sprintf("far below %d a second on one replica", defaultRateLimit)},
		{"docs/api.md", fmt.Sprintf("and at %d a request waits", defaultMaxInFlight)},
		{"docs/performance.md", fmt.Sprintf("above %d requests in flight, raise `PHONES_MAX_IN_FLIGHT_PER_TENANT`", perTenant)},
	} {
		text, err := os.ReadFile(filepath.Join("../..", c.doc))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(text)), " "), c.phrase) {
			t.Errorf("%s lacks %q: a default changed, or the sentence did; make them agree", c.doc, c.phrase)
		}
	}
}
