package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/phonesd/phonesd/internal/testkit/launch"
)

// buildRef builds phonesd as it was at the git revision ref, from a
// worktree of this repository made for it in work and removed afterwards,
// so that --baseline-ref measures it beside this checkout in one run.
func buildRef(ctx context.Context, work, ref string) (build, error) {
	sha, err := git(ctx, "", "rev-parse", "--verify", "--short", ref+"^{commit}")
	if err != nil {
		return build{}, fmt.Errorf("--baseline-ref %s: %w", ref, err)
	}
	tree := filepath.Join(work, "baseline-src")
	if _, err := git(ctx, "", "worktree", "add", "--detach", tree, sha); err != nil {
		return build{}, fmt.Errorf("--baseline-ref %s: %w", ref, err)
	}
	defer git(context.WithoutCancel(ctx), "", "worktree", "remove", "--force", tree)
	dir := filepath.Join(work, "baseline-bin")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return build{}, err
	}
	bin, err := launch.BuildFrom(ctx, tree, dir)
	if err != nil {
		return build{}, fmt.Errorf("--baseline-ref %s: %w", ref, err)
	}
	return build{name: "baseline " + sha, bin: bin}, nil
}

// git runs git with args in dir ("" for the current directory) and returns
// its trimmed output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// medianLevel is the median of each figure of a level's rounds, and the
// rounds themselves; one round is its own median.
func medianLevel(rounds []levelResult) levelResult {
	if len(rounds) == 1 {
		return rounds[0]
	}
	m := rounds[len(rounds)-1] // statuses, relay and RSS: the last round's
	m.Rounds = rounds
	med := func(get func(l levelResult) float64) float64 {
		v := make([]float64, len(rounds))
		for i, l := range rounds {
			v[i] = get(l)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	for _, ph := range []struct {
		dst *phaseResult
		get func(l levelResult) *phaseResult
	}{
		{&m.Creates, func(l levelResult) *phaseResult { return &l.Creates }},
		{&m.Floor, func(l levelResult) *phaseResult { return &l.Floor }},
	} {
		ph.dst.PerSecond = med(func(l levelResult) float64 { return ph.get(l).PerSecond })
		ph.dst.P50ms = med(func(l levelResult) float64 { return ph.get(l).P50ms })
		ph.dst.P90ms = med(func(l levelResult) float64 { return ph.get(l).P90ms })
		ph.dst.P99ms = med(func(l levelResult) float64 { return ph.get(l).P99ms })
		ph.dst.MaxMs = med(func(l levelResult) float64 { return ph.get(l).MaxMs })
		ph.dst.CPUSeconds = med(func(l levelResult) float64 { return ph.get(l).CPUSeconds })
		ph.dst.CPUPerRequestMicros = med(func(l levelResult) float64 { return ph.get(l).CPUPerRequestMicros })
	}
	m.Ratio = med(func(l levelResult) float64 { return l.Ratio })
	return m
}
