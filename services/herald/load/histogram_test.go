package load

import (
	"testing"
	"time"
)

// Quantiles come out within the buckets' 1/32 relative width, and the max exactly.
func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}} {
		got := h.quantile(c.q)
		if d := got - c.want; d > c.want/32 || -d > c.want/32 {
			t.Errorf("q%g = %s, want %s ± 1/32", c.q, got, c.want)
		}
	}
	if h.max.Load() != 10000 {
		t.Errorf("max %dµs", h.max.Load())
	}
	for us := uint64(0); us < 1<<20; us = us*3/2 + 1 {
		if b := bucketOf(us); lowerBound(b) > us || (b+1 < len(h.counts) && lowerBound(b+1) <= us) {
			t.Fatalf("%dµs in bucket %d of [%d, %d)", us, b, lowerBound(b), lowerBound(b+1))
		}
	}
}

// Out-of-order events are not repeats; a second copy is, within the window or older.
func TestWindowTellsRepeatsFromReordering(t *testing.T) {
	var w window
	for _, seq := range []int64{1, 3, 2, 5, 4} {
		if w.repeat(seq) {
			t.Fatalf("%d counted as a repeat", seq)
		}
	}
	for _, seq := range []int64{3, 5, 1} {
		if !w.repeat(seq) {
			t.Fatalf("second %d not counted", seq)
		}
	}
	if w.repeat(10000) || !w.repeat(10000) || !w.repeat(2) {
		t.Fatal("window across a jump")
	}
	if w.repeat(10000 - windowSize + 1) {
		t.Fatal("an unseen number inside the window counted as a repeat")
	}
}
