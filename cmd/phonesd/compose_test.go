package main

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgpassfile"
	"go.yaml.in/yaml/v3"
)

// TestMain lets the test binary be phonesd itself when it is run under that
// name (a link that runAsPhonesd makes): main, in a process of its own
// with exactly the environment a test gives it, as a container's.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "phonesd" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runAsPhonesd runs phonesd with args and exactly env, and returns its exit
// code, what it printed on stdout and on stderr.
func runAsPhonesd(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "phonesd")
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var exited *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &exited) {
		t.Fatalf("phonesd %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// composeFile is what the test reads of compose.yaml. Forms it does not
// know (long secret or volume syntax, a list of variables) fail to decode,
// and fields it does not read but that would change a container's
// environment or command fail the test: the test must not pass for a file
// it misreads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Build       any               `yaml:"build"`
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Entrypoint  any               `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	EnvFile     any               `yaml:"env_file"`
	User        any               `yaml:"user"`
	Secrets     []string          `yaml:"secrets"`
	Volumes     []string          `yaml:"volumes"`
}

func readCompose(t *testing.T) (composeFile, string) {
	t.Helper()
	text, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(text, &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return f, string(text)
}

// dockerfile is what the test reads of the Dockerfile: the last stage's
// environment, user and volumes, its COPY instructions, and the RUN
// instructions of every stage.
type dockerfile struct {
	env     map[string]string
	user    string
	volumes []string
	copies  []dockerCopy
	runs    []string
}

type dockerCopy struct {
	flags    map[string]string // --from, --chown, --chmod
	src, dst string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	text, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	var instruction string
	for line := range strings.Lines(string(text)) {
		line = strings.TrimSpace(line)
		if instruction == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			instruction += cont + " "
			continue
		}
		instruction += line
		keyword, rest, _ := strings.Cut(instruction, " ")
		instruction = ""
		fields := strings.Fields(rest)
		switch strings.ToUpper(keyword) {
		case "FROM":
			// A new stage: only the last one's environment is the image's.
			d.env, d.user, d.volumes, d.copies = map[string]string{}, "", nil, nil
		case "ENV":
			for _, kv := range fields {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || strings.ContainsAny(v, `"'$`) {
					t.Fatalf("Dockerfile: ENV %s: the test reads only KEY=value pairs, unquoted", rest)
				}
				d.env[k] = v
			}
		case "USER":
			d.user = rest
		case "VOLUME":
			d.volumes = append(d.volumes, fields...)
		case "COPY":
			c := dockerCopy{flags: map[string]string{}}
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				k, v, _ := strings.Cut(fields[0], "=")
				c.flags[k] = v
				fields = fields[1:]
			}
			if len(fields) == 2 {
				c.src, c.dst = fields[0], fields[1]
			}
			d.copies = append(d.copies, c)
		case "RUN":
			d.runs = append(d.runs, rest)
		}
	}
	return d
}

// dataCopy returns the COPY that makes dir in the image, the mode the
// build stage made its source with (mkdir's 0755 under the build's umask
// 022 when it gives none), and the mode dir has in the image: --chmod's,
// or that one.
func (d dockerfile) dataCopy(t *testing.T, dir string) (c dockerCopy, made, image os.FileMode) {
	t.Helper()
	for _, c := range d.copies {
		if c.dst != dir {
			continue
		}
		mkdir := regexp.MustCompile(`mkdir (-m (0?[0-7]{3}) )?` + regexp.QuoteMeta(c.src) + `(\s|$)`)
		for _, run := range d.runs {
			m := mkdir.FindStringSubmatch(run)
			if m == nil {
				continue
			}
			made = 0o755
			if m[2] != "" {
				mode, _ := strconv.ParseUint(m[2], 8, 32)
				made = os.FileMode(mode)
			}
			image = made
			if chmod, ok := c.flags["--chmod"]; ok {
				mode, err := strconv.ParseUint(chmod, 8, 32)
				if err != nil {
					t.Fatalf("Dockerfile: COPY %s %s --chmod=%s: want an octal mode", c.src, dir, chmod)
				}
				image = os.FileMode(mode)
			}
			return c, made, image
		}
		t.Fatalf("Dockerfile: no RUN makes %s (mkdir [-m MODE] %s), the source of %s", c.src, c.src, dir)
	}
	t.Fatalf("Dockerfile: no COPY makes %s", dir)
	return dockerCopy{}, 0, 0
}

// TestDockerfileDataDir: the image's data directory is phonesd's user's
// and 0700, as phonesd makes one: a new volume on it takes both. The build
// stage makes it so, and COPY's --chmod says so again, for a builder that
// would not carry the mode over.
func TestDockerfileDataDir(t *testing.T) {
	d := readDockerfile(t)
	dir := d.env["PHONES_DATA_DIR"]
	if dir == "" || !slices.Contains(d.volumes, dir) {
		t.Fatalf("Dockerfile: PHONES_DATA_DIR %q, volumes %v; want the data directory a volume", dir, d.volumes)
	}
	c, made, image := d.dataCopy(t, dir)
	if made.Perm() != 0o700 || image.Perm() != 0o700 {
		t.Errorf("Dockerfile: %s made with mode %#o, copied to %s with mode %#o; want 0700 both", c.src, made, dir, image)
	}
	if c.flags["--chown"] != d.user {
		t.Errorf("Dockerfile: COPY %s %s --chown=%s; want the image's user, %s", c.src, dir, c.flags["--chown"], d.user)
	}
}

// phonesdServices returns the services of f that run the image the
// Dockerfile builds, by name.
func phonesdServices(t *testing.T, f composeFile) map[string]composeService {
	t.Helper()
	built := map[string]bool{}
	for _, s := range f.Services {
		if s.Build != nil {
			built[s.Image] = true
		}
	}
	out := map[string]composeService{}
	for name, s := range f.Services {
		if s.Build == nil && !built[s.Image] {
			continue
		}
		if s.Entrypoint != nil || s.EnvFile != nil || s.User != nil {
			t.Fatalf("compose.yaml: service %s sets entrypoint, env_file or user, which this test does not read", name)
		}
		out[name] = s
	}
	if len(out) == 0 {
		t.Fatal("compose.yaml: no service runs the phonesd image")
	}
	return out
}

// containerEnv is the environment compose gives the container of service
// s: the image's, with the service's on top, where the paths compose mounts
// are mapped to this machine, and only those: a secret's to its file, a
// volume's to a new directory made as the image makes it.
func containerEnv(t *testing.T, f composeFile, d dockerfile, name string, s composeService) map[string]string {
	t.Helper()
	mounts := map[string]string{}
	for _, secret := range s.Secrets {
		file := f.Secrets[secret].File
		if file == "" {
			t.Fatalf("compose.yaml: service %s uses secret %s, which has no file", name, secret)
		}
		abs, err := filepath.Abs(filepath.Join("../..", file))
		if err != nil {
			t.Fatal(err)
		}
		mounts["/run/secrets/"+secret] = abs
	}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Fatalf("compose.yaml: service %s: volume %q; want source:target", name, v)
		}
		target := parts[1]
		_, _, mode := d.dataCopy(t, target)
		dir := filepath.Join(t.TempDir(), "volume")
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		mounts[target] = dir
	}
	env := maps.Clone(d.env)
	for k, v := range s.Environment {
		if strings.Contains(v, "$") {
			t.Fatalf("compose.yaml: service %s: %s=%s: compose would interpolate it, and this test does not", name, k, v)
		}
		env[k] = v
	}
	for k, v := range env {
		for in, here := range mounts {
			if v == in || strings.HasPrefix(v, in+"/") {
				env[k] = here + strings.TrimPrefix(v, in)
				t.Logf("service %s: %s=%s, mounted from %s", name, k, v, env[k])
			}
		}
	}
	return env
}

// TestCompose runs phonesd check for each service of compose.yaml that runs
// the phonesd image, with exactly the environment and command compose
// gives its container (the hostnames of the compose network do not
// resolve here: check reaches nothing). Each must pass without a warning,
// and a bad value must stop check with the start's very line.
func TestCompose(t *testing.T) {
	f, text := readCompose(t)
	d := readDockerfile(t)
	for name, s := range phonesdServices(t, f) {
		t.Run(name, func(t *testing.T) {
			env := containerEnv(t, f, d, name, s)
			args := append([]string{"check"}, s.Command...)
			code, stdout, stderr := runAsPhonesd(t, env, args...)
			if code != 0 {
				t.Fatalf("phonesd %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
			}
			if strings.Contains(stdout, `"level":"WARN"`) || strings.Contains(stdout, `"level":"ERROR"`) || strings.Contains(stdout, "level=WARN") {
				t.Errorf("phonesd %s warned:\n%s", strings.Join(args, " "), stdout)
			}
		})
	}

	t.Run("bad value", func(t *testing.T) {
		var name string
		for n, s := range phonesdServices(t, f) {
			if len(s.Command) == 0 {
				name = n
			}
		}
		if name == "" {
			t.Fatal("compose.yaml: no service runs the phonesd service itself")
		}
		env := containerEnv(t, f, d, name, f.Services[name])
		bad := []map[string]string{{"PHONES_JWT_LEEWAY": "soon"}}
		if env["PHONES_ALLOW_INSECURE_TRANSPORT"] == "true" {
			// The transport rule this file lifts, as it was before it did.
			bad = append(bad, map[string]string{"PHONES_ALLOW_INSECURE_TRANSPORT": ""})
		}
		for _, change := range bad {
			changed := maps.Clone(env)
			for k, v := range change {
				if changed[k] = v; v == "" {
					delete(changed, k)
				}
			}
			checkCode, _, checkErr := runAsPhonesd(t, changed, "check")
			startCode, _, startErr := runAsPhonesd(t, changed)
			if checkCode != 1 || startCode != 1 || checkErr != startErr || strings.Count(checkErr, "\n") != 1 {
				t.Errorf("with %v: phonesd check exit %d, %q; the start exit %d, %q; want both exit 1 with the same one line", change, checkCode, checkErr, startCode, startErr)
			}
		}
	})

	t.Run("token command", func(t *testing.T) {
		// The token command of the file's own instructions, run in the
		// container it names.
		m := regexp.MustCompile(`docker compose exec -T (\S+) phonesd ([^)]+)\)`).FindStringSubmatch(text)
		if m == nil {
			t.Fatal("compose.yaml: no token command (docker compose exec -T SERVICE phonesd ...) in its instructions")
		}
		s, ok := phonesdServices(t, f)[m[1]]
		if !ok {
			t.Fatalf("compose.yaml: the token command runs in %s, which is not a phonesd service", m[1])
		}
		code, stdout, stderr := runAsPhonesd(t, containerEnv(t, f, d, m[1], s), strings.Fields(m[2])...)
		if code != 0 || !regexp.MustCompile(`^[\w-]+\.[\w-]+\.[\w-]+\n$`).MatchString(stdout) {
			t.Errorf("phonesd %s: exit %d, printed %q %q; want a token", m[2], code, stdout, stderr)
		}
	})
}

// TestComposeSecrets: no password is written in compose.yaml, and the
// secret files agree: PGPASSFILE holds, for the database phonesd's URL
// names, the password the postgres service's secret sets, and the URL's
// user and database are those the postgres service creates.
func TestComposeSecrets(t *testing.T) {
	f, _ := readCompose(t)
	var phonesd, pg composeService
	for _, s := range f.Services {
		if s.Environment["PHONES_DATABASE_URL"] != "" {
			phonesd = s
		}
		if s.Environment["POSTGRES_DB"] != "" {
			pg = s
		}
	}
	for name, s := range f.Services {
		for k, v := range s.Environment {
			if strings.Contains(k, "PASSWORD") && !strings.HasSuffix(k, "_FILE") {
				t.Errorf("compose.yaml: service %s: %s=%s: a password written in the file", name, k, v)
			}
		}
	}
	u, err := url.Parse(phonesd.Environment["PHONES_DATABASE_URL"])
	if err != nil {
		t.Fatalf("PHONES_DATABASE_URL: %v", err)
	}
	if _, set := u.User.Password(); set || u.Query().Has("password") {
		t.Errorf("PHONES_DATABASE_URL holds a password")
	}
	if user, db := u.User.Username(), strings.TrimPrefix(u.Path, "/"); user != pg.Environment["POSTGRES_USER"] || db != pg.Environment["POSTGRES_DB"] {
		t.Errorf("PHONES_DATABASE_URL names user %s, database %s; the postgres service creates %s, %s", user, db, pg.Environment["POSTGRES_USER"], pg.Environment["POSTGRES_DB"])
	}
	secretFile := func(s composeService, variable string) string {
		t.Helper()
		name, ok := strings.CutPrefix(s.Environment[variable], "/run/secrets/")
		if !ok || !slices.Contains(s.Secrets, name) || f.Secrets[name].File == "" {
			t.Fatalf("compose.yaml: %s=%s; want /run/secrets/NAME of a secret of the service's, from a file", variable, s.Environment[variable])
		}
		return filepath.Join("../..", f.Secrets[name].File)
	}
	raw, err := os.ReadFile(secretFile(pg, "POSTGRES_PASSWORD_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	// The postgres image reads the file as a shell's $(< file) does.
	password := strings.TrimRight(string(raw), "\n")
	passfile, err := pgpassfile.ReadPassfile(secretFile(phonesd, "PGPASSFILE"))
	if err != nil {
		t.Fatal(err)
	}
	if got := passfile.FindPassword(u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"), u.User.Username()); got == "" || got != password {
		t.Errorf("PGPASSFILE gives %s:%s%s the password %q; want the postgres service's, %q", u.Hostname(), u.Port(), u.Path, got, password)
	}
}
