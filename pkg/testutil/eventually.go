// Package testutil holds helpers shared by Herald's tests. It is imported
// only from _test.go files.
package testutil

import (
	"testing"
	"time"
)

// Poll intervals for Eventually: short at first so fast conditions cost
// little, growing so slow ones do not burn the two CPUs the tests share.
const (
	firstInterval = 5 * time.Millisecond
	maxInterval   = 100 * time.Millisecond
)

// Eventually calls f until it returns nil or timeout elapses, then fails tb
// with f's last error. It is the only way Herald's tests wait for a
// condition: no bare time.Sleep as synchronisation. f is always called at
// least once, and once more at the deadline, so a condition that becomes
// true during the last interval is not reported as a failure.
func Eventually(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	if err := Poll(timeout, f); err != nil {
		tb.Fatalf("condition not met within %s: %v", timeout, err)
	}
}

// Poll is Eventually without a testing.TB, for TestMain and helpers that
// report errors themselves. It returns nil once f does, or f's last error
// when timeout elapses.
func Poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	interval := firstInterval
	for {
		err := f()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		time.Sleep(min(interval, left))
		interval = min(interval*2, maxInterval)
	}
}
