package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
)

func TestReadyzWarnsOfAStaleKeySet(t *testing.T) {
	for _, c := range []struct {
		maxStale string
		warn     bool
	}{
		{"1s", true},
		{"0", false}, // off
		{"", false},  // 24h
	} {
		t.Run("PHONES_JWKS_MAX_STALE="+c.maxStale, func(t *testing.T) {
			s := start(t, map[string]string{"PHONES_JWKS_MAX_STALE": c.maxStale})
			// The key set is refreshed every 10 minutes: a second after the
			// start it is a second old.
			time.Sleep(1200 * time.Millisecond)
			r := s.do(http.MethodGet, "/readyz", "")
			var body struct {
				Warnings []string `json:"warnings"`
			}
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusOK {
				t.Errorf("/readyz: %d %s; want 200: a stale key set does not stop the replica", r.status, r.body)
			}
			warned := len(body.Warnings) == 1 && strings.Contains(body.Warnings[0], "key set was last refreshed")
			if warned != c.warn || (!c.warn && len(body.Warnings) > 0) {
				t.Errorf("/readyz warnings %q; want a key set warning: %v", body.Warnings, c.warn)
			}
		})
	}
}

func TestWatchKeySetAgeLogsWhenTheLimitIsCrossed(t *testing.T) {
	var age atomic.Int64
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		fresh := auth.KeyFreshness{Age: func() (time.Duration, bool) { return time.Duration(age.Load()), true }, MaxStale: time.Hour}
		watchKeySetAge(ctx, fresh, time.Millisecond, 500*time.Millisecond, slog.New(slog.NewJSONHandler(&logs, nil)))
	}()
	defer func() { cancel(); <-done }()
	const stale = `"level":"ERROR","msg":"key set not refreshed for longer than PHONES_JWKS_MAX_STALE`
	count := func(s string) int { return strings.Count(logs.String(), s) }
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
			}
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := count(stale); n != 0 {
		t.Fatalf("%d error lines for a fresh key set; want none", n)
	}
	age.Store(int64(2 * time.Hour))
	wait("the error line at the crossing", func() bool { return count(stale) == 1 })
	time.Sleep(50 * time.Millisecond) // many checks, well within the reminder
	if n := count(stale); n != 1 {
		t.Errorf("%d error lines within the reminder interval; want 1", n)
	}
	wait("the reminder", func() bool { return count(stale) == 2 })
	age.Store(0)
	wait("the line saying it was refreshed", func() bool { return count("key set refreshed again") == 1 })
	age.Store(int64(2 * time.Hour))
	wait("the error line at the next crossing", func() bool { return count(stale) == 3 })
}
