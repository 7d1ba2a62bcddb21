package main

import (
	"context"
	"encoding/json"
	"fmt"
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
			// The key set is refreshed every 10 minutes: wait until the
			// replica itself reports it older than a second.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				_, m := scrape(t, s.base+"/metrics")
				if age := counter(m, "phonesd_jwks_age_seconds", nil); age > 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("phonesd_jwks_age_seconds not past 1 after 10s")
				}
			}
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
	const remind = 500 * time.Millisecond
	var age, checks atomic.Int64
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		fresh := auth.KeyFreshness{Age: func() (time.Duration, bool) {
			checks.Add(1)
			return time.Duration(age.Load()), true
		}, MaxStale: time.Hour}
		watchKeySetAge(ctx, fresh, time.Millisecond, remind, slog.New(slog.NewJSONHandler(&logs, nil)))
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
	// checked waits until n more checks have run to their end: the check
	// after them has begun.
	checked := func(n int64) {
		t.Helper()
		from := checks.Load()
		wait(fmt.Sprintf("%d checks", n), func() bool { return checks.Load() > from+n })
	}
	checked(10)
	if n := count(stale); n != 0 {
		t.Fatalf("%d error lines for a fresh key set; want none", n)
	}
	crossed := time.Now()
	age.Store(int64(2 * time.Hour))
	wait("the error line at the crossing", func() bool { return count(stale) == 1 })
	checked(10)
	// The reminder cannot come before remind has passed since the
	// crossing; a machine so slow that it has cannot judge this part.
	if n, within := count(stale), time.Since(crossed) < remind; within && n != 1 {
		t.Errorf("%d error lines within the reminder interval; want 1", n)
	} else if !within {
		t.Logf("the checks after the crossing outlasted the reminder interval: the count within it not judged")
	}
	wait("the reminder", func() bool { return count(stale) == 2 })
	age.Store(0)
	wait("the line saying it was refreshed", func() bool { return count("key set refreshed again") == 1 })
	age.Store(int64(2 * time.Hour))
	wait("the error line at the next crossing", func() bool { return count(stale) == 3 })
}
