package load

import (
	"fmt"
	"testing"
	"time"
)

// Quantiles come out within the buckets' 1/32 relative width, and the max exactly, whichever
// parts the samples went to.
func TestHistogramQuantiles(t *testing.T) {
	var l latencies
	for i := 1; i <= 10000; i++ {
		l.part(i * 7).add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}} {
		got := l.quantile(c.q)
		if d := got - c.want; d > c.want/32 || -d > c.want/32 {
			t.Errorf("q%g = %s, want %s ± 1/32", c.q, got, c.want)
		}
	}
	if l.max() != 10000*time.Microsecond || l.count() != 10000 {
		t.Errorf("max %s of %d samples", l.max(), l.count())
	}
	var h histogram
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

// The reader takes seq and ts (unix nanoseconds, 19 digits) out of a frame without decoding it.
func TestParseLoadReadsSeqAndTimestamp(t *testing.T) {
	ts := time.Now().UnixNano()
	frame := fmt.Sprintf(`{"Time":"x","Type":"load","Object":{"seq":%d,"ts":%d,"pad":"xx"},"Position":"e:9"}`, 4711, ts)
	seq, got, ok := parseLoad([]byte(frame))
	if !ok || seq != 4711 || got != ts {
		t.Fatalf("parseLoad = %d, %d, %v; want 4711, %d", seq, got, ok, ts)
	}
	if _, _, ok := parseLoad([]byte(`{"Type":"other"}`)); ok {
		t.Fatal("a frame without a load event parsed")
	}
}
