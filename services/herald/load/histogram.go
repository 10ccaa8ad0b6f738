package load

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts latencies in log-linear buckets: 32 per power of two of microseconds, so
// a quantile is within about 3% of the truth, in fixed memory, with one atomic add per sample
// from any goroutine.
type histogram struct {
	counts [64 * subBuckets]atomic.Int64
	max    atomic.Int64
	n      atomic.Int64
}

const subBits = 5
const subBuckets = 1 << subBits

func bucketOf(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	exp := bits.Len64(us) - subBits // >= 1
	return exp*subBuckets + int(us>>(exp-1)) - subBuckets
}

// lowerBound is the smallest latency (µs) counted in bucket b.
func lowerBound(b int) uint64 {
	if b < subBuckets {
		return uint64(b)
	}
	exp := b / subBuckets
	return uint64(b%subBuckets+subBuckets) << (exp - 1)
}

func (h *histogram) add(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[bucketOf(uint64(us))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// latencies spreads the samples of many readers over a few histograms, so that a thousand
// readers on two cores do not all add to the same counters (n, and the few buckets most
// samples fall in): at a million samples a second the load tool's own cache-line traffic
// would otherwise be part of what it measures. Quantiles merge the parts.
type latencies struct{ parts [8]histogram }

// part is the histogram reader i adds to.
func (l *latencies) part(i int) *histogram { return &l.parts[i%len(l.parts)] }

func (l *latencies) count() int64 {
	var n int64
	for i := range l.parts {
		n += l.parts[i].n.Load()
	}
	return n
}

// quantile returns the latency below which a fraction q of all samples lie.
func (l *latencies) quantile(q float64) time.Duration {
	n := l.count()
	if n == 0 {
		return 0
	}
	rank := int64(q * float64(n))
	var seen int64
	for b := range l.parts[0].counts {
		for i := range l.parts {
			seen += l.parts[i].counts[b].Load()
		}
		if seen > rank {
			return time.Duration(lowerBound(b)) * time.Microsecond
		}
	}
	return l.max()
}

// max is the largest sample.
func (l *latencies) max() time.Duration {
	var m int64
	for i := range l.parts {
		m = max(m, l.parts[i].max.Load())
	}
	return time.Duration(m) * time.Microsecond
}
