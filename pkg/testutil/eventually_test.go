package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEventuallySucceedsAfterRetries(t *testing.T) {
	t.Parallel()
	calls := 0
	Eventually(t, time.Minute, func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("f called %d times, want 3", calls)
	}
}

func TestPollReturnsLastErrorAfterTimeout(t *testing.T) {
	t.Parallel()
	calls := 0
	start := time.Now()
	err := Poll(50*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("attempt %d", calls)
	})
	if err == nil || err.Error() != fmt.Sprintf("attempt %d", calls) {
		t.Fatalf("err = %v, want the last attempt's error (attempt %d)", err, calls)
	}
	if calls < 2 {
		t.Fatalf("f called %d times, want several", calls)
	}
	if el := time.Since(start); el > 30*time.Second { // only guards against an unbounded loop
		t.Fatalf("Poll took %s for a 50ms timeout", el)
	}
}

// fakeTB records Fatalf instead of stopping the test, so the failure path of
// Eventually can be asserted.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestEventuallyFailsWithLastError(t *testing.T) {
	t.Parallel()
	ftb := &fakeTB{TB: t}
	Eventually(ftb, 20*time.Millisecond, func() error { return errors.New("still broken") })
	if ftb.failed == "" {
		t.Fatal("Eventually did not fail the test")
	}
	if want := "still broken"; !strings.Contains(ftb.failed, want) {
		t.Fatalf("failure %q does not mention %q", ftb.failed, want)
	}
}
