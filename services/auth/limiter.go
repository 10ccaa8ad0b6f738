package auth

import (
	"sync"
	"time"
)

// maxTrackedNames bounds the limiter's memory: a flood of made-up user names
// cannot grow it without limit.
const maxTrackedNames = 10000

// failureLimiter refuses logins for a user name after max failures within
// window, until the window that began with the first failure ends. It slows
// password guessing against one account; it cannot stop guessing spread
// over many names, which bcrypt's cost bounds instead.
//
// The trade-off is deliberate: an attacker can lock an account for at most
// one window by failing on purpose, which is cheaper to live with than
// unbounded guessing.
type failureLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	names map[string]failures // mu guards names.
}

type failures struct {
	count int
	since time.Time
}

// newFailureLimiter returns a limiter; max <= 0 disables it.
func newFailureLimiter(max int, window time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{max: max, window: window, now: now, names: make(map[string]failures)}
}

// allow reports whether name may try to log in now, and if not, when it may
// try again.
func (l *failureLimiter) allow(name string) (bool, time.Duration) {
	if l.max <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.names[name]
	if !ok {
		return true, 0
	}
	if end := f.since.Add(l.window); !now.Before(end) {
		delete(l.names, name)
		return true, 0
	} else if f.count >= l.max {
		return false, end.Sub(now)
	}
	return true, 0
}

// fail records a failed attempt for name.
func (l *failureLimiter) fail(name string) {
	if l.max <= 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.names[name]
	if !ok || !now.Before(f.since.Add(l.window)) {
		if !ok && len(l.names) >= maxTrackedNames {
			l.prune(now)
			if len(l.names) >= maxTrackedNames {
				return // Full of live entries: stop tracking new names rather than grow.
			}
		}
		f = failures{since: now}
	}
	f.count++
	l.names[name] = f
}

// succeed forgets name's failures.
func (l *failureLimiter) succeed(name string) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	delete(l.names, name)
	l.mu.Unlock()
}

// prune drops entries whose window has ended. mu must be held.
func (l *failureLimiter) prune(now time.Time) {
	for name, f := range l.names {
		if !now.Before(f.since.Add(l.window)) {
			delete(l.names, name)
		}
	}
}
