package auth

import (
	"context"
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
	byKID map[string]jose.JSONWebKey
}

// fetchCall is one JWKS fetch shared by everyone who asked while it ran.
type fetchCall struct {
	done chan struct{}
	err  error
}

// newKeySet keeps the keys a token may be verified with and logs why the
// others are dropped.
func (v *Verifier) newKeySet(keys []jose.JSONWebKey) *keySet {
	ks := &keySet{byKID: make(map[string]jose.JSONWebKey, len(keys))}
	for _, k := range keys {
		if reason, level := v.unusable(k); reason != "" {
			v.cfg.Logger.Log(context.Background(), level, "jwks key skipped", "kid", k.KeyID, "reason", reason)
			continue
		}
		if _, dup := ks.byKID[k.KeyID]; dup {
			v.cfg.Logger.Warn("jwks key skipped", "kid", k.KeyID, "reason", "duplicate kid")
			continue
		}
		ks.byKID[k.KeyID] = k
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

// fetch downloads and installs the key set, joining a fetch already under way.
// With onlyIfStale it does nothing when the last fetch began less than
// MinRefetchInterval ago, which bounds what tokens with invented kids can cost
// the key server.
func (v *Verifier) fetch(ctx context.Context, onlyIfStale bool) error {
	v.mu.Lock()
	call := v.inflight
	if call == nil {
		now := v.cfg.Now()
		if onlyIfStale && !v.lastFetch.IsZero() && now.Sub(v.lastFetch) < v.cfg.MinRefetchInterval {
			v.mu.Unlock()
			return nil
		}
		call = &fetchCall{done: make(chan struct{})}
		v.inflight, v.lastFetch = call, now
		// The shared fetch must outlive the request that started it, since
		// others wait on it; the deadline keeps a hung server from pinning it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchDeadline)
		go func() {
			defer cancel()
			ks, err := v.download(fctx)
			if err == nil {
				v.keys.Store(ks)
			}
			call.err = err
			v.mu.Lock()
			v.inflight = nil
			v.mu.Unlock()
			close(call.done)
		}()
	}
	v.mu.Unlock()

	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lookup finds the key for kid, refetching the set once when it is unknown
// in case the issuer has rotated keys since the last fetch.
func (v *Verifier) lookup(ctx context.Context, kid string) (jose.JSONWebKey, bool) {
	if ks := v.keys.Load(); ks != nil {
		if k, ok := ks.byKID[kid]; ok {
			return k, true
		}
	}
	if v.cfg.JWKSURL == "" {
		return jose.JSONWebKey{}, false
	}
	if err := v.fetch(ctx, true); err != nil {
		if ctx.Err() == nil {
			v.cfg.Logger.Warn("jwks refetch for unknown kid failed", "error", err)
		}
		return jose.JSONWebKey{}, false
	}
	if ks := v.keys.Load(); ks != nil {
		if k, ok := ks.byKID[kid]; ok {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
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
