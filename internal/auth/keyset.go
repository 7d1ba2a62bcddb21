package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
)

const (
	minRSABits    = 2048
	maxJWKSBytes  = 1 << 20
	fetchDeadline = 30 * time.Second
)

// keySet is immutable once stored, so Verify reads it without locking.
type keySet struct {
	byKID map[string]signingKey
	// fetched is when the set was downloaded; zero for fixed keys.
	fetched time.Time
}

// signingKey is a key of the set and its RFC 7638 thumbprint, which tells a
// cached token whether the key that signed it is still the one under its
// kid after a refresh.
type signingKey struct {
	jose.JSONWebKey
	thumb [32]byte
}

// fetchCall is one JWKS fetch shared by everyone who asked while it ran.
type fetchCall struct {
	done chan struct{}
	err  error
}

// newKeySet keeps the keys a token may be verified with and logs why the
// others are dropped.
func (v *Verifier) newKeySet(keys []jose.JSONWebKey) *keySet {
	ks := &keySet{byKID: make(map[string]signingKey, len(keys))}
	for _, k := range keys {
		if reason, level := v.unusable(k); reason != "" {
			v.cfg.Logger.Log(context.Background(), level, "jwks key skipped", "kid", k.KeyID, "reason", reason)
			continue
		}
		if _, dup := ks.byKID[k.KeyID]; dup {
			v.cfg.Logger.Warn("jwks key skipped", "kid", k.KeyID, "reason", "duplicate kid")
			continue
		}
		thumb, err := k.Thumbprint(crypto.SHA256)
		if err != nil || len(thumb) != 32 {
			v.cfg.Logger.Warn("jwks key skipped", "kid", k.KeyID, "reason", "no thumbprint")
			continue
		}
		ks.byKID[k.KeyID] = signingKey{JSONWebKey: k, thumb: [32]byte(thumb)}
	}
	return ks
}

// unusable says why k cannot verify tokens, at Warn level when the key set
// itself looks wrong rather than merely holding keys meant for other uses.
func (v *Verifier) unusable(k jose.JSONWebKey) (string, slog.Level) {
	switch {
	case k.KeyID == "":
		return "no kid", slog.LevelDebug
	case k.Use != "" && k.Use != "sig":
		return "not a signing key", slog.LevelDebug
	case !k.IsPublic():
		return "not a public key", slog.LevelWarn
	case !k.Valid():
		return "invalid key", slog.LevelWarn
	case k.Algorithm != "" && !slices.Contains(v.algs, jose.SignatureAlgorithm(k.Algorithm)):
		return "algorithm not accepted", slog.LevelDebug
	}
	if pub, ok := k.Key.(*rsa.PublicKey); ok && pub.N.BitLen() < minRSABits {
		return fmt.Sprintf("rsa key of %d bits is under %d", pub.N.BitLen(), minRSABits), slog.LevelWarn
	}
	return "", 0
}

// parseKeySet decodes keys one by one because RFC 7517 asks that keys of an
// unknown type be ignored rather than spoil the whole set.
func (v *Verifier) parseKeySet(body []byte) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys := make([]jose.JSONWebKey, 0, len(doc.Keys))
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			v.cfg.Logger.Debug("jwks key skipped", "reason", err.Error())
			continue
		}
		keys = append(keys, k)
	}
	ks := v.newKeySet(keys)
	if len(ks.byKID) == 0 {
		return nil, errors.New("decode jwks: no usable public signing key")
	}
	return ks, nil
}

func (v *Verifier) download(ctx context.Context) (*keySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: unexpected status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("fetch jwks: body exceeds %d bytes", maxJWKSBytes)
	}
	return v.parseKeySet(body)
}

// startFetch downloads and installs the key set in the background and
// returns the fetch, joining one already under way. With onlyIfStale it
// starts nothing, and returns nil, when the last fetch began less than
// MinRefetchInterval ago, which bounds what tokens with invented kids can
// cost the key server.
func (v *Verifier) startFetch(onlyIfStale bool) *fetchCall {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.inflight != nil {
		return v.inflight
	}
	now := v.cfg.Now()
	if onlyIfStale && !v.lastFetch.IsZero() && now.Sub(v.lastFetch) < v.cfg.MinRefetchInterval {
		return nil
	}
	call := &fetchCall{done: make(chan struct{})}
	v.inflight, v.lastFetch = call, now
	// The fetch outlives whoever started it, since others may join it; the
	// deadline keeps a hung server from pinning it.
	ctx, cancel := context.WithTimeout(context.Background(), fetchDeadline)
	go func() {
		defer cancel()
		ks, err := v.download(ctx)
		if err == nil {
			ks.fetched = v.cfg.Now()
			v.keys.Store(ks)
		}
		call.err = err
		v.mu.Lock()
		v.inflight = nil
		v.mu.Unlock()
		close(call.done)
	}()
	return call
}

// fetch downloads and installs the key set and waits for it, or for ctx.
func (v *Verifier) fetch(ctx context.Context, onlyIfStale bool) error {
	call := v.startFetch(onlyIfStale)
	if call == nil {
		return nil
	}
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lookup finds the key for kid. An unknown kid may be a key the issuer has
// rotated in since the last fetch, so it starts a refetch of the set, at
// most once per MinRefetchInterval, but never waits for it: a request never
// waits on the identity provider, whose slowness would otherwise hold
// whatever the request holds. The client's next request finds the new key.
func (v *Verifier) lookup(kid string) (signingKey, bool) {
	if ks := v.keys.Load(); ks != nil {
		if k, ok := ks.byKID[kid]; ok {
			return k, true
		}
	}
	if v.cfg.JWKSURL == "" {
		return signingKey{}, false
	}
	if call := v.startFetch(true); call != nil {
		go func() {
			<-call.done
			if call.err != nil {
				v.cfg.Logger.Warn("jwks refetch for unknown kid failed", "error", call.err)
			}
		}()
	}
	return signingKey{}, false
}

// Fetch downloads the key set once, waits for it or for ctx, installs it,
// and returns how many usable keys it holds; with Config.Keys it only
// counts them. It returns the download's error: the server unreachable, an
// answer other than 200, a body too large, or no usable key.
func (v *Verifier) Fetch(ctx context.Context) (int, error) {
	if v.cfg.JWKSURL != "" {
		if err := v.fetch(ctx, false); err != nil {
			return 0, err
		}
	}
	return len(v.keys.Load().byKID), nil
}

// KeySetAge returns how long ago the key set in use was fetched: a failed
// refresh keeps the last good set, which grows older. It reports false when
// no set has been fetched yet, and for fixed keys, which never age.
func (v *Verifier) KeySetAge() (time.Duration, bool) {
	ks := v.keys.Load()
	if ks == nil || ks.fetched.IsZero() {
		return 0, false
	}
	return v.cfg.Now().Sub(ks.fetched), true
}

// Run fetches the key set (retrying with capped exponential backoff until the first success), then refreshes it every RefreshInterval until ctx ends, keeping the last good set when a refresh fails; with Config.Keys it returns at once.
func (v *Verifier) Run(ctx context.Context) {
	if v.cfg.JWKSURL == "" {
		return
	}
	for delay := v.retryBase; ; delay = min(2*delay, v.retryMax) {
		err := v.fetch(ctx, false)
		if err == nil {
			v.cfg.Logger.Info("jwks loaded", "keys", len(v.keys.Load().byKID))
			break
		}
		if ctx.Err() != nil {
			return
		}
		v.cfg.Logger.Warn("jwks fetch failed; retrying", "error", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return
		}
	}

	ticker := time.NewTicker(v.cfg.RefreshInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if err := v.fetch(ctx, false); err != nil && ctx.Err() == nil {
				v.cfg.Logger.Warn("jwks refresh failed; keeping the previous key set", "error", err)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
