package agent

import (
	"testing"
	"time"
)

func TestBackoffCeilingDoublesToCap(t *testing.T) {
	b := newBackoff(time.Second, 60*time.Second)
	b.rand = func(n int64) int64 { return n - 1 } // always the ceiling
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, w := range want {
		if got := b.Next(); got != w*time.Second {
			t.Fatalf("attempt %d: delay %s, want %s", i, got, w*time.Second)
		}
	}
	b.Reset()
	if got := b.Next(); got != time.Second {
		t.Fatalf("after Reset: delay %s, want 1s", got)
	}
}

func TestBackoffFullJitterStaysInRange(t *testing.T) {
	b := newBackoff(10*time.Millisecond, 80*time.Millisecond)
	sawSmall := false
	for i := range 200 {
		ceil := b.ceiling()
		d := b.Next()
		if d < 0 || d > ceil {
			t.Fatalf("draw %d: delay %s outside [0, %s]", i, d, ceil)
		}
		if d < ceil/2 {
			sawSmall = true
		}
	}
	if !sawSmall {
		t.Fatal("200 draws never fell in the lower half: not full jitter")
	}
}

func TestBackoffNoOverflowAfterManyAttempts(t *testing.T) {
	b := newBackoff(time.Second, time.Minute)
	b.rand = func(n int64) int64 { return n - 1 }
	for range 10000 {
		if d := b.Next(); d > time.Minute || d < 0 {
			t.Fatalf("delay %s out of range", d)
		}
	}
}
