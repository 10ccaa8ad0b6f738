package access

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// passwordCacheTTL is how long a successful user:password login is used again. Short: it only
// has to cover a reconnect storm; revocation and password changes end it at once anyway.
const passwordCacheTTL = 30 * time.Second

// maxCachedLogins bounds the cache; past it, expired entries go first, then any.
const maxCachedLogins = 10000

// loginCache remembers tokens got by password, keyed by an HMAC of the credentials under a
// key made at start (so neither the memory nor a dump holds anything a password could be
// guessed from offline), and lets concurrent logins with the same credentials share one
// request to auth.
type loginCache struct {
	key []byte
	now func() time.Time

	mu       sync.Mutex
	done     map[[sha256.Size]byte]cachedLogin // mu guards done and inflight
	inflight map[[sha256.Size]byte]*pendingLogin
}

type cachedLogin struct {
	raw   string
	until time.Time
}

type pendingLogin struct {
	done chan struct{}
	raw  string
	err  error
}

func newLoginCache() *loginCache {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return &loginCache{key: key, now: time.Now, done: make(map[[sha256.Size]byte]cachedLogin),
		inflight: make(map[[sha256.Size]byte]*pendingLogin)}
}

func (c *loginCache) id(user, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// login returns a cached token for the credentials that valid still accepts, else the token of
// a login already in flight for them, else fetches one; only successes are remembered.
func (c *loginCache) login(ctx context.Context, user, password string, fetch func(context.Context) (string, error), valid func(raw string) bool) (string, error) {
	id := c.id(user, password)
	c.mu.Lock()
	e, cached := c.done[id]
	c.mu.Unlock()
	// Verified outside the lock: a storm checks its cached token concurrently.
	if cached && c.now().Before(e.until) && valid(e.raw) {
		return e.raw, nil
	}
	c.mu.Lock()
	if cur, ok := c.done[id]; cached && ok && cur == e {
		delete(c.done, id) // expired or revoked
	}
	p, joined := c.inflight[id]
	if !joined {
		p = &pendingLogin{done: make(chan struct{})}
		c.inflight[id] = p
	}
	c.mu.Unlock()
	if joined {
		select {
		case <-p.done:
			return p.raw, p.err
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	}
	// The first caller's context bounds the shared request; others wait on theirs.
	p.raw, p.err = fetch(ctx)
	c.mu.Lock()
	delete(c.inflight, id)
	if p.err == nil {
		c.store(id, p.raw)
	}
	c.mu.Unlock()
	close(p.done)
	return p.raw, p.err
}

// store remembers raw under id. c.mu must be held.
func (c *loginCache) store(id [sha256.Size]byte, raw string) {
	now := c.now()
	if len(c.done) >= maxCachedLogins {
		for k, e := range c.done {
			if !now.Before(e.until) {
				delete(c.done, k)
			}
		}
		for k := range c.done {
			if len(c.done) < maxCachedLogins {
				break
			}
			delete(c.done, k)
		}
	}
	c.done[id] = cachedLogin{raw: raw, until: now.Add(passwordCacheTTL)}
}
