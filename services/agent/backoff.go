package agent

import (
	"math/rand/v2"
	"time"
)

// Backoff defaults: the first retry waits up to 1s, no retry waits more than a
// minute, and a connection that lived longer than a minute counts as healthy,
// so the next failure starts again from the base.
const (
	DefaultBackoffBase  = time.Second
	DefaultBackoffCap   = time.Minute
	DefaultHealthyAfter = time.Minute
)

// backoff computes reconnect delays: exponential growth with "full jitter"
// (a uniform draw in [0, min(cap, base·2^attempt)]), so a fleet of agents that
// lost the same ingest does not reconnect in lockstep.
type backoff struct {
	base, cap time.Duration
	attempt   int
	// rand returns a uniform value in [0, n); swapped in tests.
	rand func(n int64) int64
}

func newBackoff(base, cap time.Duration) *backoff {
	return &backoff{base: base, cap: cap, rand: rand.Int64N}
}

// ceiling is the upper bound of the next draw: base·2^attempt, capped.
func (b *backoff) ceiling() time.Duration {
	d := b.base
	for i := 0; i < b.attempt && d < b.cap; i++ {
		d *= 2
	}
	return min(d, b.cap)
}

// Next returns the delay before the next attempt and moves to the next step.
func (b *backoff) Next() time.Duration {
	c := b.ceiling()
	if c < b.cap {
		b.attempt++
	}
	if c <= 0 {
		return 0
	}
	return time.Duration(b.rand(int64(c) + 1))
}

// Reset starts the sequence again from the base delay.
func (b *backoff) Reset() { b.attempt = 0 }
