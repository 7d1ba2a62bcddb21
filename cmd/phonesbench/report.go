package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is everything one invocation measured; --json writes it as is.
type report struct {
	Started   time.Time   `json:"started"`
	GoVersion string      `json:"go_version"`
	CPUs      int         `json:"cpus"`
	Warmup    string      `json:"warmup"`
	Duration  string      `json:"duration"`
	Accounts  int64       `json:"accounts"`
	ExtraEnv  []string    `json:"phonesd_env,omitempty"`
	WorkDir   string      `json:"work_dir,omitempty"`
	Runs      []runResult `json:"runs"`
}

// runResult is one phonesd on fresh storage: a backend at one preload.
type runResult struct {
	Backend        string         `json:"backend"`         // sqlite, postgres, or url for --url
	Build          string         `json:"build,omitempty"` // "this", or "baseline <commit>" with --baseline-ref
	Preload        int            `json:"preload"`         // phones stored before phonesd started
	PreloadSeconds float64        `json:"preload_seconds,omitempty"`
	Storage        *storageResult `json:"storage,omitempty"` // absent for --url
	Levels         []levelResult  `json:"levels"`

	// Replicas is how many phonesd shared the load (--replicas); Topology
	// names the private servers of a --ha run; Footprint is the size of
	// PostgreSQL's tables after the run.
	Replicas  int        `json:"replicas,omitempty"`
	Topology  string     `json:"topology,omitempty"`
	Footprint *footprint `json:"footprint,omitempty"`
}

// storageResult is the storage's own commit latency, measured before
// phonesd started, and the durability settings it ran under.
type storageResult struct {
	Commits  int       `json:"commits"`
	P50ms    float64   `json:"p50_ms"`
	P99ms    float64   `json:"p99_ms"`
	Settings []setting `json:"settings"`
}

// setting is a durability setting as the database reports it.
type setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// levelResult is one concurrency on one phonesd.
type levelResult struct {
	Concurrency int         `json:"concurrency"`
	Creates     phaseResult `json:"creates"`
	Floor       phaseResult `json:"floor"`
	// Ratio is creates per second ÷ floor per second.
	Ratio float64 `json:"ratio"`
	// RelayCatchUpSeconds is how long after the creates the events file
	// took to hold an event for every phone created; RelayBehind counts
	// the events still missing when the bench stopped waiting.
	RelayCatchUpSeconds float64 `json:"relay_catch_up_seconds"`
	RelayBehind         int64   `json:"relay_behind,omitempty"`
	// PeakRSSBytes is phonesd's VmHWM after this level: the peak since it
	// started. Absent for --url.
	PeakRSSBytes int64 `json:"peak_rss_bytes,omitempty"`
	// Rounds are the level's measurements with --rounds over 1; the
	// figures above are then their medians.
	Rounds []levelResult `json:"rounds,omitempty"`

	// Scale is what the creates cost PostgreSQL; absent for SQLite and
	// --url. DeliveryLag is how long events took to reach the stream in a
	// --ha run. With --rounds both are the last round's.
	Scale       *scaleResult `json:"scale,omitempty"`
	DeliveryLag *lagResult   `json:"delivery_lag,omitempty"`
}

// phaseResult is one measurement: creates or the floor.
type phaseResult struct {
	// Requests counts the requests started in the measured span.
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	// PerSecond counts answers with the expected status: 200 for creates,
	// 400 for the floor.
	PerSecond       float64          `json:"per_second"`
	P50ms           float64          `json:"p50_ms"`
	P90ms           float64          `json:"p90_ms"`
	P99ms           float64          `json:"p99_ms"`
	MaxMs           float64          `json:"max_ms"`
	Statuses        map[string]int64 `json:"statuses"`
	TransportErrors int64            `json:"transport_errors"`
	FirstError      string           `json:"first_error,omitempty"`
	// CPUSeconds is phonesd's CPU, user and system, over the measured
	// span, and CPUPerRequestMicros that divided by the requests it
	// answered; absent when the bench did not start phonesd.
	CPUSeconds          float64 `json:"cpu_seconds,omitempty"`
	CPUPerRequestMicros float64 `json:"cpu_per_request_us,omitempty"`
	// ClientCPUPerRequestMicros is the bench's own CPU (its client, on
	// the same machine) per request answered; IdlePercent is the share of
	// the machine's CPU time left idle over the measured span. Together
	// they say whether the CPUs were the limit, and how much of them the
	// client took.
	ClientCPUPerRequestMicros float64 `json:"client_cpu_per_request_us,omitempty"`
	IdlePercent               float64 `json:"idle_percent"`
	// answered counts answers by status, warm-up included: the events the
	// relay must deliver.
	answered map[int]int64
}

func newReport(o options, started time.Time) report {
	return report{
		Started:   started.UTC().Truncate(time.Second),
		GoVersion: runtime.Version(),
		CPUs:      runtime.NumCPU(),
		Warmup:    o.warmup.String(),
		Duration:  o.duration.String(),
		Accounts:  o.accounts,
		ExtraEnv:  o.env,
	}
}

// setCPU records the CPU used between two readings, those of the measured
// span's start and end.
func (p *phaseResult) setCPU(from, to cpuReading) {
	var answered int64
	for _, n := range p.Statuses {
		answered += n
	}
	perRequest := func(used time.Duration) float64 {
		if answered == 0 {
			return 0
		}
		return float64(used.Microseconds()) / float64(answered)
	}
	if from.phonesd >= 0 && to.phonesd >= 0 {
		used := to.phonesd - from.phonesd
		p.CPUSeconds = used.Seconds()
		p.CPUPerRequestMicros = perRequest(used)
	}
	if from.client >= 0 && to.client >= 0 {
		p.ClientCPUPerRequestMicros = perRequest(to.client - from.client)
	}
	if from.machine >= 0 && to.machine > from.machine {
		p.IdlePercent = 100 * float64(to.idle-from.idle) / float64(to.machine-from.machine)
	}
}

// finish computes the level's ratio.
func (l *levelResult) finish() {
	if l.Floor.PerSecond > 0 {
		l.Ratio = l.Creates.PerSecond / l.Floor.PerSecond
	}
}

// check returns an error when a measurement got no answer of the expected
// status at all: the wiring is broken (a refused token, a dead server), and
// the numbers measure nothing. It sets no performance threshold.
func (r report) check() error {
	var errs []error
	for _, run := range r.Runs {
		for _, l := range run.Levels {
			for _, p := range []struct {
				name string
				ph   phaseResult
				want string
			}{{"creates", l.Creates, "200"}, {"floor", l.Floor, "400"}} {
				if p.ph.Statuses[p.want] == 0 {
					errs = append(errs, fmt.Errorf("%s concurrency %d %s: no %s answer (statuses %s%s)",
						run.label(), l.Concurrency, p.name, p.want, statuses(p.ph), firstError(p.ph)))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func firstError(p phaseResult) string {
	if p.FirstError == "" {
		return ""
	}
	return "; first error: " + p.FirstError
}

func (r runResult) label() string {
	l := r.name()
	if r.Preload > 0 {
		l += " preload " + strconv.Itoa(r.Preload)
	}
	if r.Build != "" && r.Build != "this" {
		l += " (" + r.Build + ")"
	}
	return l
}

// name is the backend, with the --ha topology and the replicas when set.
func (r runResult) name() string {
	n := r.Backend
	if r.Topology != "" {
		n += " " + r.Topology
	}
	if r.Replicas > 1 {
		n += " ×" + strconv.Itoa(r.Replicas)
	}
	return n
}

// printReport writes the results table, the storage's commit latency, and
// with --growth the change of each ratio.
func printReport(w io.Writer, r report) {
	fmt.Fprintf(w, "\nphonesbench %s: %d CPUs, %s; each measurement %s after a %s warm-up; %d accounts\n",
		r.Started.Format(time.RFC3339), r.CPUs, r.GoVersion, r.Duration, r.Warmup, r.Accounts)
	if len(r.ExtraEnv) > 0 {
		fmt.Fprintf(w, "phonesd environment beyond the bench's: %s\n", strings.Join(r.ExtraEnv, " "))
	}
	if len(r.Runs) > 0 && r.Runs[0].Backend == "url" {
		fmt.Fprintln(w, "phonesd at --url, not started by the bench: no commit timing, relay catch-up or RSS; concurrency levels run in turn, creates then floor.")
	} else {
		fmt.Fprintln(w, "One phonesd (or --replicas of them) per backend and preload, on fresh storage; its concurrency levels run in turn on it, creates then floor.")
		fmt.Fprintln(w, "relay: how long after the creates the events file (or --ha's stream) held an event for every phone created.")
	}
	fmt.Fprintln(w, "floor: the same requests with \"type\": \"INVALID\" (400, no storage); ratio = creates/s ÷ floor/s.")
	fmt.Fprintln(w, "Latencies in ms: p50/p90/p99/max. cpu: phonesd's, per request; client: the bench's own, per request, creates | floor; idle: the machine's CPU left idle, creates | floor.")
	fmt.Fprintln(w)

	compared := slices.ContainsFunc(r.Runs, func(run runResult) bool { return run.Build != "" && run.Build != "this" })
	header := []string{"backend", "preload", "conc", "creates/s", "floor/s", "ratio", "creates ms", "floor ms", "cpu µs/create", "cpu µs/floor", "client µs", "idle %", "statuses creates | floor", "relay", "peak rss"}
	if compared {
		header = append([]string{"phonesd"}, header...)
	}
	t := table{header: header}
	for _, run := range r.Runs {
		for _, l := range run.Levels {
			relay := "n/a"
			if run.Storage != nil && run.Build != limitBuild {
				relay = fmt.Sprintf("%.1fs", l.RelayCatchUpSeconds)
				if l.RelayBehind > 0 {
					relay = fmt.Sprintf("%d behind", l.RelayBehind)
				}
			}
			rss := "n/a"
			if l.PeakRSSBytes > 0 {
				rss = fmt.Sprintf("%.0f MiB", float64(l.PeakRSSBytes)/(1<<20))
			}
			row := []string{run.name(), strconv.Itoa(run.Preload), strconv.Itoa(l.Concurrency),
				fmt.Sprintf("%.0f", l.Creates.PerSecond), fmt.Sprintf("%.0f", l.Floor.PerSecond), fmt.Sprintf("%.3f", l.Ratio),
				latencies(l.Creates), latencies(l.Floor), cpu(l.Creates), cpu(l.Floor),
				fmt.Sprintf("%.0f | %.0f", l.Creates.ClientCPUPerRequestMicros, l.Floor.ClientCPUPerRequestMicros),
				fmt.Sprintf("%.0f | %.0f", l.Creates.IdlePercent, l.Floor.IdlePercent),
				statuses(l.Creates) + " | " + statuses(l.Floor), relay, rss}
			if compared {
				row = append([]string{run.Build}, row...)
			}
			t.add(row...)
		}
	}
	if len(t.rows) > 0 {
		t.write(w)
	}
	printComparison(w, r)
	printLimit(w, r)

	var stored []runResult
	for _, run := range r.Runs {
		if run.Storage != nil {
			stored = append(stored, run)
		}
	}
	if len(stored) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Storage: one bare insert + commit, repeated, on the same disk with the service's durability settings, before phonesd started.")
		fmt.Fprintln(w, "\"one at a time\" is 1000 ÷ p50: the creates/s of a service paying one commit per create, one after another.")
		stHeader := []string{"backend", "preload", "commits", "p50 ms", "p99 ms", "one at a time", "settings"}
		if compared {
			stHeader = append([]string{"phonesd"}, stHeader...)
		}
		st := table{header: stHeader}
		for _, run := range stored {
			s := run.Storage
			var settings []string
			for _, kv := range s.Settings {
				settings = append(settings, kv.Name+"="+kv.Value)
			}
			oneAtATime := "n/a"
			if s.P50ms > 0 {
				oneAtATime = fmt.Sprintf("%.0f/s", 1000/s.P50ms)
			}
			row := []string{run.name(), strconv.Itoa(run.Preload), strconv.Itoa(s.Commits), ms(s.P50ms), ms(s.P99ms), oneAtATime, strings.Join(settings, " ")}
			if compared {
				row = append([]string{run.Build}, row...)
			}
			st.add(row...)
		}
		st.write(w)
	}

	printGrowth(w, r)
	printScale(w, r)
	printReplicas(w, r)
	printHA(w, r)
	var preloads []string
	for _, run := range r.Runs {
		if run.PreloadSeconds > 0 {
			preloads = append(preloads, fmt.Sprintf("%s %d phones in %.0fs (%.0f/s)", run.Backend, run.Preload, run.PreloadSeconds, float64(run.Preload)/run.PreloadSeconds))
		}
	}
	if len(preloads) > 0 {
		fmt.Fprintf(w, "\nPreload, through the stores' batch method: %s.\n", strings.Join(preloads, "; "))
	}
}

// printComparison gives, for each backend, replica count, preload and
// concurrency that --baseline-ref measured, this build's figures over the
// baseline's.
func printComparison(w io.Writer, r report) {
	type key struct {
		backend                 string
		replicas, preload, conc int
	}
	base := map[key]levelResult{}
	for _, run := range r.Runs {
		if strings.HasPrefix(run.Build, "baseline") {
			for _, l := range run.Levels {
				base[key{run.Backend, run.Replicas, run.Preload, l.Concurrency}] = l
			}
		}
	}
	if len(base) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "This build ÷ the baseline, measured alternately in this run (medians of the rounds):")
	t := table{header: []string{"backend", "preload", "conc", "creates/s", "floor/s", "creates p99", "cpu/create", "cpu/floor"}}
	div := func(a, b float64) string {
		if b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, run := range r.Runs {
		if run.Build != "this" {
			continue
		}
		for _, l := range run.Levels {
			b, ok := base[key{run.Backend, run.Replicas, run.Preload, l.Concurrency}]
			if !ok {
				continue
			}
			t.add(run.name(), strconv.Itoa(run.Preload), strconv.Itoa(l.Concurrency),
				div(l.Creates.PerSecond, b.Creates.PerSecond), div(l.Floor.PerSecond, b.Floor.PerSecond),
				div(l.Creates.P99ms, b.Creates.P99ms),
				div(l.Creates.CPUPerRequestMicros, b.Creates.CPUPerRequestMicros), div(l.Floor.CPUPerRequestMicros, b.Floor.CPUPerRequestMicros))
		}
	}
	t.write(w)
}

// cpu formats phonesd's CPU per request in microseconds.
func cpu(p phaseResult) string {
	if p.CPUPerRequestMicros == 0 {
		return "n/a"
	}
	return strconv.FormatFloat(p.CPUPerRequestMicros, 'f', 0, 64)
}

// printGrowth compares, for each backend and concurrency measured both
// empty and preloaded, the ratios of the two.
func printGrowth(w io.Writer, r report) {
	type key struct {
		backend, build string
		concurrency    int
	}
	empty := map[key]levelResult{}
	for _, run := range r.Runs {
		if run.Preload == 0 {
			for _, l := range run.Levels {
				empty[key{run.Backend, run.Build, l.Concurrency}] = l
			}
		}
	}
	header := false
	for _, run := range r.Runs {
		if run.Preload == 0 {
			continue
		}
		for _, l := range run.Levels {
			e, ok := empty[key{run.Backend, run.Build, l.Concurrency}]
			if !ok || e.Ratio == 0 {
				continue
			}
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintln(w, "Growth: ratio preloaded ÷ ratio empty (1.00 = creates slow down no more than the floor).")
				header = true
			}
			fmt.Fprintf(w, "  %s concurrency %d: ratio %.3f empty, %.3f at %d phones: %.2f\n",
				run.Backend, l.Concurrency, e.Ratio, l.Ratio, run.Preload, l.Ratio/e.Ratio)
		}
	}
}

func latencies(p phaseResult) string {
	return ms(p.P50ms) + "/" + ms(p.P90ms) + "/" + ms(p.P99ms) + "/" + ms(p.MaxMs)
}

// ms formats milliseconds with about three significant digits.
func ms(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// statuses lists the answers by status, then the transport errors.
func statuses(p phaseResult) string {
	var codes []string
	for c := range p.Statuses {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, c+":"+strconv.FormatInt(p.Statuses[c], 10))
	}
	if p.TransportErrors > 0 {
		parts = append(parts, "err:"+strconv.FormatInt(p.TransportErrors, 10))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// table aligns text columns left and the others right.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	widths := make([]int, len(t.header))
	numeric := make([]bool, len(t.header))
	for i, h := range t.header {
		widths[i] = len([]rune(h))
		numeric[i] = true
	}
	for _, row := range t.rows {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
			if _, err := strconv.ParseFloat(strings.TrimSuffix(c, "/s"), 64); err != nil {
				numeric[i] = false
			}
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if numeric[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.header)
	for _, row := range t.rows {
		line(row)
	}
}

// writeJSON writes r to path.
func writeJSON(path string, r report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	return nil
}
