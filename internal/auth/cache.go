package auth

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
	"unsafe"
)

// A client sends the same bearer token on thousands of requests, and an
// RS256 verification costs tens of microseconds of CPU: a quarter of
// phonesd's CPU under load before this cache. Like Envoy's jwt_authn cache,
// it keeps what a successful verification produced, keyed by a digest of
// the token's exact bytes (canonicalCompact guarantees that one signed token
// has one spelling), and re-checks on every hit what can change without the
// token changing: the clock (exp, nbf) and the key set (a key removed at a
// refresh stops every token it signed at once). Only successes are kept.

// cacheShards spreads the entries over independently locked shards, so
// that concurrent requests rarely wait for one another.
const cacheShards = 16

// Per-entry memory: an entry costs its fixed part plus the principal's
// strings. The cache's memory is bounded by entryBudget per entry on
// average, and an entry larger than maxEntryBytes (a token with a huge roles
// claim, say) is not kept at all: it is verified each time.
const (
	entryOverhead = 256
	entryBudget   = 1 << 10
	maxEntryBytes = 4 << 10
)

// verified is what a successful verification produced.
type verified struct {
	principal Principal
	kid       string
	thumb     [32]byte // the signing key's RFC 7638 thumbprint
	expiry    time.Time
	notBefore time.Time // zero when the token has no nbf
}

// tokenCache is a bounded LRU of verified tokens, safe for concurrent use.
type tokenCache struct {
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu         sync.Mutex
	entries    map[[32]byte]*cacheEntry
	head       cacheEntry // sentinel of the recency list: head.next is the newest
	bytes      int
	maxEntries int
	maxBytes   int
}

type cacheEntry struct {
	key        [32]byte
	v          verified
	size       int
	prev, next *cacheEntry
}

// newTokenCache returns a cache of at most size entries, or nil (no cache)
// when size is 0 or less.
func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	c := &tokenCache{}
	per := max(size/cacheShards, 1)
	for i := range c.shards {
		s := &c.shards[i]
		s.entries = make(map[[32]byte]*cacheEntry)
		s.head.next, s.head.prev = &s.head, &s.head
		s.maxEntries = per
		s.maxBytes = per * entryBudget
	}
	return c
}

// tokenKey digests a token's exact bytes. It reads them in place: the
// conversion to []byte would copy every token (some 600 bytes for RS256) on
// every request, and Sum256 neither keeps nor changes what it reads.
func tokenKey(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

func (c *tokenCache) shard(key [32]byte) *cacheShard {
	return &c.shards[binary.LittleEndian.Uint32(key[:4])%cacheShards]
}

// get returns what is kept for key, marking it recently used.
func (c *tokenCache) get(key [32]byte) (verified, bool) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok {
		return verified{}, false
	}
	s.unlink(e)
	s.pushFront(e)
	return e.v, true
}

// remove forgets key, for an entry found stale.
func (c *tokenCache) remove(key [32]byte) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok {
		s.unlink(e)
		delete(s.entries, key)
		s.bytes -= e.size
	}
}

// put keeps v under key, evicting the least recently used entries beyond
// the shard's bounds.
func (c *tokenCache) put(key [32]byte, v verified) {
	size := entrySize(v)
	if size > maxEntryBytes {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.entries[key]; ok {
		s.unlink(old)
		s.bytes -= old.size
	}
	e := &cacheEntry{key: key, v: v, size: size}
	s.entries[key] = e
	s.pushFront(e)
	s.bytes += size
	for len(s.entries) > s.maxEntries || s.bytes > s.maxBytes {
		last := s.head.prev
		s.unlink(last)
		delete(s.entries, last.key)
		s.bytes -= last.size
	}
}

// len counts the entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}

func (s *cacheShard) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (s *cacheShard) pushFront(e *cacheEntry) {
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}

// entrySize estimates the memory an entry holds.
func entrySize(v verified) int {
	p := v.principal
	n := entryOverhead + len(v.kid) + len(p.Tenant) + len(p.Subject) + len(p.Email) + len(p.Origin)
	for _, r := range p.Roles {
		n += 16 + len(r)
	}
	return n
}
