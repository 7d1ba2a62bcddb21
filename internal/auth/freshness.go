package auth

import (
	"fmt"
	"time"
)

// KeyFreshness says how old the key set in use may grow before it is
// reported: by /readyz as a warning, and in the log.
type KeyFreshness struct {
	// Age reports how long ago the key set in use was fetched; false when
	// it does not age. Nil: never stale.
	Age func() (time.Duration, bool)
	// MaxStale is the age past which the key set is stale; 0: never.
	MaxStale time.Duration
}

// Stale returns the key set's age and whether it is older than MaxStale:
// the one rule behind /readyz's warning and the log's.
func (k KeyFreshness) Stale() (age time.Duration, stale bool) {
	if k.Age == nil || k.MaxStale <= 0 {
		return 0, false
	}
	age, ok := k.Age()
	return age, ok && age > k.MaxStale
}

// Warning describes a key set older than MaxStale for an operator, or
// returns "" when it is not.
func (k KeyFreshness) Warning() string {
	age, stale := k.Stale()
	if !stale {
		return ""
	}
	return fmt.Sprintf("the key set was last refreshed %s ago, longer than the %s allowed: tokens are still checked against it, revoked keys included, until the key set's URL answers again",
		age.Round(time.Second), k.MaxStale)
}
