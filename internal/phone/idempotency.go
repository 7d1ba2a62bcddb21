package phone

import (
	"errors"
	"time"
)

// Errors of creates made with an idempotency key.
var (
	// ErrKeyMismatch means the key was first used for another request.
	ErrKeyMismatch = errors.New("idempotency key used with another request")
	// ErrKeyInProgress means a create with the same key is still running.
	ErrKeyInProgress = errors.New("idempotency key in use by a running request")
	// ErrKeyTaken is a store's answer when another create took the key
	// first (on another replica); the service then replays that create.
	ErrKeyTaken = errors.New("idempotency key taken")
)

// Idempotency is the key a create was sent with, as a store keeps it.
type Idempotency struct {
	// Scope is the key within its tenant and, for an account-specific
	// token, its account: one tenant can never see another's answers.
	Scope string
	// Fingerprint is a digest of the request the key was first used for.
	Fingerprint []byte
	// ExpiresAt is when the key may be used for another request.
	ExpiresAt time.Time
}

// Replay is what a store remembers of a create made with a key.
type Replay struct {
	Fingerprint []byte
	PhoneID     int64
	// Created reports whether the create stored its phone: the first answer
	// was a 200 with PhoneID, else a 409 (duplicate).
	Created bool
}
