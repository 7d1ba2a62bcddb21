package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/phonesd/phonesd/internal/auth"
)

const (
	// keySetAgeCheck is how often the key set's age is compared with
	// PHONES_JWKS_MAX_STALE.
	keySetAgeCheck = time.Minute
	// staleKeySetReminder is how often a key set past the limit is
	// reported again.
	staleKeySetReminder = time.Hour
)

// watchKeySetAge logs at error level when the key set has grown stale
// (older than k.MaxStale), and again every remind while it stays so;
// phonesd keeps serving with it meanwhile, since an unreachable identity
// provider must not take the API down. It checks every `every` until ctx
// ends, and returns at once when k.MaxStale is 0.
func watchKeySetAge(ctx context.Context, k auth.KeyFreshness, every, remind time.Duration, log *slog.Logger) {
	if k.MaxStale <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var reported time.Time // when the current staleness was last logged
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a, stale := k.Stale()
		switch {
		case !stale:
			if !reported.IsZero() {
				log.Info("key set refreshed again", "age", a.Round(time.Second).String())
			}
			reported = time.Time{}
		case reported.IsZero() || time.Since(reported) >= remind:
			log.Error("key set not refreshed for longer than PHONES_JWKS_MAX_STALE; still verifying tokens with it, revoked keys included",
				"age", a.Round(time.Second).String(), "max_stale", k.MaxStale.String())
			reported = time.Now()
		}
	}
}
