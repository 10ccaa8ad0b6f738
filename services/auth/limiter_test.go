package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestFailureLimiterPerAddress(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(3, time.Minute, func() time.Time { return now })
	for i := range 3 {
		if ok, _, _ := l.allow("alice", "10.0.0.66"); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		l.fail("alice", "10.0.0.66")
	}
	ok, wait, byAddr := l.allow("alice", "10.0.0.66")
	if ok || wait != time.Second || byAddr {
		t.Fatalf("after 3 failures allow = %v, %s, %v; want false, 1s backoff, per pair", ok, wait, byAddr)
	}
	// The stranger's failures do not touch alice from her own address.
	if ok, _, _ := l.allow("alice", "192.0.2.1"); !ok {
		t.Fatal("alice from another address is refused")
	}
	// Backoff doubles with every further failure, capped at the window.
	now = now.Add(time.Second)
	l.fail("alice", "10.0.0.66")
	if _, wait, _ := l.allow("alice", "10.0.0.66"); wait != 2*time.Second {
		t.Fatalf("backoff after 4 failures = %s, want 2s", wait)
	}
	for range 10 {
		l.fail("alice", "10.0.0.66")
	}
	if _, wait, _ := l.allow("alice", "10.0.0.66"); wait != time.Minute {
		t.Fatalf("backoff capped = %s, want 1m", wait)
	}
	if st := l.stats(); st.RefusedUserAddress != 3 || st.RefusedAddress != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Success clears the pair.
	l.fail("carol", "10.0.0.7")
	l.fail("carol", "10.0.0.7")
	l.succeed("carol", "10.0.0.7")
	l.fail("carol", "10.0.0.7")
	l.fail("carol", "10.0.0.7")
	if ok, _, _ := l.allow("carol", "10.0.0.7"); !ok {
		t.Fatal("success did not reset failures")
	}
}

func TestFailureLimiterSprayFromOneAddress(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(3, time.Minute, func() time.Time { return now })
	for i := range 3 * addressFactor {
		l.fail(fmt.Sprintf("user%d", i), "10.0.0.66")
	}
	if ok, _, byAddr := l.allow("someone", "10.0.0.66"); ok || !byAddr {
		t.Fatal("an address spraying user names is not limited")
	}
	if ok, _, _ := l.allow("someone", "10.0.0.67"); !ok {
		t.Fatal("another address is limited too")
	}
}

func TestFailureLimiterBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(1, time.Minute, func() time.Time { return now })
	for i := range maxTrackedSources + 100 {
		l.fail(fmt.Sprintf("u%d", i), fmt.Sprintf("a%d", i))
	}
	if n := len(l.entries); n > maxTrackedSources {
		t.Fatalf("tracking %d entries, bound %d", n, maxTrackedSources)
	}
	now = now.Add(time.Minute)
	l.fail("late", "x")
	if ok, _, _ := l.allow("late", "x"); ok {
		t.Fatal("expired entries were not pruned to make room")
	}
}

func TestFailureLimiterDisabled(t *testing.T) {
	t.Parallel()
	l := newFailureLimiter(-1, time.Minute, time.Now)
	for range 100 {
		l.fail("x", "a")
	}
	if ok, _, _ := l.allow("x", "a"); !ok {
		t.Fatal("disabled limiter refused")
	}
}
