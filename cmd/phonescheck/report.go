package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// result is one scenario on one backend: what it did, what it found.
type result struct {
	Scenario string `json:"scenario"`
	Backend  string `json:"backend"`
	Sink     string `json:"sink"`
	// Skipped says why the scenario did not run; Error why it did not finish.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
	tally
	Violations []violation `json:"violations"`
	Notes      []string    `json:"notes,omitempty"`
	Seconds    float64     `json:"seconds"`
	// Ledger is the file holding every request and its outcome.
	Ledger string `json:"ledger,omitempty"`

	// Expected are what the checks found where the scenario's setup allows
	// it (an asynchronous standby may lose acknowledged writes): reported,
	// not counted as violations.
	Expected []violation `json:"expected,omitempty"`
}

// shownPerKind bounds the violations of one kind printed per scenario;
// the JSON results and the ledger hold them all.
const shownPerKind = 10

const tableHeader = "scenario\tbackend\tsink\tcreates\tno key\tok\tfailed\tunknown (created [before retry]/none/unresolved)\tupdates (ok/failed/unknown)\tphones\tevents\tcopies\tviolations\ttime\t"

func tableRow(r result) string {
	if r.Skipped != "" {
		return fmt.Sprintf("%s\t%s\t%s\tskipped: %s\t\t\t\t\t\t\t\t\t\t\t", r.Scenario, r.Backend, r.Sink, r.Skipped)
	}
	violations := fmt.Sprint(len(r.Violations))
	if r.Error != "" {
		violations = "error"
	}
	return fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d (%d [%d]/%d/%d)\t%d (%d/%d/%d)\t%d\t%d\t%d\t%s\t%.0fs\t",
		r.Scenario, r.Backend, r.Sink, r.Creates, r.NoKey, r.OK, r.Failed,
		r.Unknown, r.UnknownCreated, r.UnknownEarly, r.UnknownNone, r.UnknownUnresolved,
		r.Updates, r.UpdatesOK, r.UpdatesFailed, r.UpdatesUnknown,
		r.Phones, r.Events, r.Duplicates, violations, r.Seconds)
}

// printScenario prints one scenario's table, notes and violations.
func printScenario(w io.Writer, r result) {
	fmt.Fprintf(w, "\n== %s on %s (events: %s)\n", r.Scenario, r.Backend, r.Sink)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, tableHeader)
	fmt.Fprintln(tw, tableRow(r))
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  ERROR: the scenario could not finish: %s\n", r.Error)
	}
	if r.Duplicates > 0 {
		fmt.Fprintf(w, "  - %d events in two replicas' events files: a replica taking the lease over delivers what the previous holder wrote but had not marked sent\n", r.Duplicates)
	}
	if r.Late > 0 {
		fmt.Fprintf(w, "  - %d events reached the stream after events of higher outbox seq, within one relay batch: refused during the leader election and retried (the documented exception)\n", r.Late)
	}
	printExpected(w, r.Expected)
	shown := map[string]int{}
	for _, v := range r.Violations {
		shown[v.Kind]++
		if shown[v.Kind] <= shownPerKind {
			fmt.Fprintf(w, "  VIOLATION %s: %s\n", v.Kind, indent(v.Detail))
		}
	}
	for kind, n := range shown {
		if n > shownPerKind {
			fmt.Fprintf(w, "  ... and %d more %s violations\n", n-shownPerKind, kind)
		}
	}
	if r.Ledger != "" && len(r.Violations) > 0 {
		fmt.Fprintf(w, "  ledger: %s\n", r.Ledger)
	}
}

// printExpected prints what an asynchronous standby lost: a count per
// kind, then the first of each kind.
func printExpected(w io.Writer, found []violation) {
	if len(found) == 0 {
		return
	}
	kinds := map[string]int{}
	var order []string
	for _, v := range found {
		if kinds[v.Kind] == 0 {
			order = append(order, v.Kind)
		}
		kinds[v.Kind]++
	}
	var parts []string
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
	}
	fmt.Fprintf(w, "  FOUND, as an asynchronous standby allows (reported, not judged): %s\n", strings.Join(parts, ", "))
	shown := map[string]int{}
	for _, v := range found {
		shown[v.Kind]++
		if shown[v.Kind] <= 3 {
			fmt.Fprintf(w, "    %s: %s\n", v.Kind, indent(v.Detail))
		}
	}
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n      ") }

// printReport prints the summary table of every scenario.
func printReport(w io.Writer, results []result) {
	if len(results) == 0 {
		return
	}
	fmt.Fprintln(w, "\n== summary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, tableHeader)
	total := 0
	for _, r := range results {
		fmt.Fprintln(tw, tableRow(r))
		total += len(r.Violations)
		if r.Error != "" {
			total++
		}
	}
	tw.Flush()
	if total == 0 {
		fmt.Fprintln(w, "no violations")
	} else {
		fmt.Fprintf(w, "%d violations\n", total)
	}
}

// writeJSON writes the results to path.
func writeJSON(path string, results []result) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeLedger writes every request of a scenario and its outcome to path.
func writeLedger(path string, creates []*createEntry, updates []*updateEntry) error {
	b, err := json.MarshalIndent(struct {
		Creates []*createEntry `json:"creates"`
		Updates []*updateEntry `json:"updates"`
	}{creates, updates}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
