package auth

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxTrackedSources bounds the limiter's memory: a flood of made-up user names or addresses
// cannot grow it without limit.
const maxTrackedSources = 10000

// addressFactor is how many more failures a source address may have (over every user name)
// than one (user, address) pair: a shared NAT address holds many honest users.
const addressFactor = 10

// firstBackoff is the wait after the limit is reached; it doubles with each further failure,
// up to the window.
const firstBackoff = time.Second

// failureLimiter slows password guessing without letting a stranger lock a user out: failures
// count per (user name, source address) and per source address, never per user name alone,
// so an attacker elsewhere only slows himself, and the user's right password from their own
// address still works. Past max failures (addressFactor*max for an address) each attempt
// waits a backoff that doubles per failure, up to window; an entry is forgotten window after
// its last failure, and a success clears its pair.
//
// Guessing spread over many addresses against one user is bounded by bcrypt's cost and the
// login worker pool, not by a lock that its owner would suffer from too.
type failureLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[limitKey]failures // mu guards entries.

	refusedPair, refusedAddress atomic.Int64
}

type limitKey struct {
	user    string // empty: the address entry
	address string
}

type failures struct {
	count int
	last  time.Time
}

// LimitStats are the limiter's counters since start.
type LimitStats struct {
	// RefusedUserAddress counts logins refused for failures of that user from that address.
	RefusedUserAddress int64
	// RefusedAddress counts logins refused for failures from that address over all users.
	RefusedAddress int64
}

// newFailureLimiter returns a limiter; max <= 0 disables it.
func newFailureLimiter(max int, window time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{max: max, window: window, now: now, entries: make(map[limitKey]failures)}
}

// backoff returns until when f refuses, given its limit.
func (l *failureLimiter) until(f failures, limit int) time.Time {
	if f.count < limit {
		return time.Time{}
	}
	d := firstBackoff << min(f.count-limit, 30)
	if d <= 0 || d > l.window {
		d = l.window
	}
	return f.last.Add(d)
}

// allow reports whether user may try to log in from address now, and if not, for how long
// not; byAddress says whether the address's own limit refused.
func (l *failureLimiter) allow(user, address string) (ok bool, wait time.Duration, byAddress bool) {
	if l.max <= 0 {
		return true, 0, false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if end := l.until(l.entries[limitKey{address: address}], addressFactor*l.max); now.Before(end) {
		l.refusedAddress.Add(1)
		return false, end.Sub(now), true
	}
	if end := l.until(l.entries[limitKey{user: user, address: address}], l.max); now.Before(end) {
		l.refusedPair.Add(1)
		return false, end.Sub(now), false
	}
	return true, 0, false
}

// fail records a failed attempt of user from address.
func (l *failureLimiter) fail(user, address string) {
	if l.max <= 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range []limitKey{{address: address}, {user: user, address: address}} {
		f, ok := l.entries[k]
		if !ok || !now.Before(f.last.Add(l.window)) {
			if !ok && len(l.entries) >= maxTrackedSources {
				l.prune(now)
				if len(l.entries) >= maxTrackedSources {
					continue // Full of live entries: stop tracking new ones rather than grow.
				}
			}
			f = failures{}
		}
		f.count++
		f.last = now
		l.entries[k] = f
	}
}

// succeed forgets the failures of user from address (not the address's own count).
func (l *failureLimiter) succeed(user, address string) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	delete(l.entries, limitKey{user: user, address: address})
	l.mu.Unlock()
}

func (l *failureLimiter) stats() LimitStats {
	return LimitStats{RefusedUserAddress: l.refusedPair.Load(), RefusedAddress: l.refusedAddress.Load()}
}

// prune drops entries whose window has ended. mu must be held.
func (l *failureLimiter) prune(now time.Time) {
	for k, f := range l.entries {
		if !now.Before(f.last.Add(l.window)) {
			delete(l.entries, k)
		}
	}
}
