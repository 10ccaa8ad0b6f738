package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestFailureLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(3, time.Minute, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.allow("alice"); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		l.fail("alice")
	}
	ok, wait := l.allow("alice")
	if ok || wait != time.Minute {
		t.Fatalf("after 3 failures allow = %v, %s; want false, 1m", ok, wait)
	}
	if ok, _ := l.allow("bob"); !ok {
		t.Fatal("another name is limited too")
	}
	now = now.Add(59 * time.Second)
	if ok, wait := l.allow("alice"); ok || wait != time.Second {
		t.Fatalf("within window allow = %v, %s", ok, wait)
	}
	now = now.Add(time.Second)
	if ok, _ := l.allow("alice"); !ok {
		t.Fatal("still refused after the window")
	}
	// Success clears the count.
	l.fail("carol")
	l.fail("carol")
	l.succeed("carol")
	l.fail("carol")
	l.fail("carol")
	if ok, _ := l.allow("carol"); !ok {
		t.Fatal("success did not reset failures")
	}
}

func TestFailureLimiterBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(1, time.Minute, func() time.Time { return now })
	for i := range maxTrackedNames + 100 {
		l.fail(fmt.Sprintf("u%d", i))
	}
	if n := len(l.names); n > maxTrackedNames {
		t.Fatalf("tracking %d names, bound %d", n, maxTrackedNames)
	}
	now = now.Add(time.Minute)
	l.fail("late")
	if ok, _ := l.allow("late"); ok {
		t.Fatal("expired entries were not pruned to make room")
	}
}

func TestFailureLimiterDisabled(t *testing.T) {
	t.Parallel()
	l := newFailureLimiter(-1, time.Minute, time.Now)
	for range 100 {
		l.fail("x")
	}
	if ok, _ := l.allow("x"); !ok {
		t.Fatal("disabled limiter refused")
	}
}
