package agent

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestSampleLoopTiming runs the sampler on synctest's fake clock: one
// sample at start and one per interval, the oldest evicted once the buffer
// is full, and the loop gone as soon as its context is.
func TestSampleLoopTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{URL: "ws://127.0.0.1:1/", APIKey: "k", Interval: 5 * time.Second,
			CommandTimeout: time.Second, OutputCap: 1, Buffer: 10}
		a, err := New(cfg, Deps{Collector: &countingCollector{}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); a.sample(ctx) }()

		synctest.Wait()
		if n := a.buf.Len(); n != 1 {
			t.Fatalf("%d samples at start, want 1", n)
		}
		time.Sleep(4*time.Second + 999*time.Millisecond)
		synctest.Wait()
		if n := a.buf.Len(); n != 1 {
			t.Fatalf("%d samples just before the first interval, want 1", n)
		}
		time.Sleep(time.Millisecond + 59*5*time.Second) // 60 intervals after the start
		synctest.Wait()
		items := a.buf.After(0)
		if len(items) != 10 || a.buf.Dropped() != 51 || items[0].seq != 52 || items[9].seq != 61 {
			t.Fatalf("after 60 intervals: %d held from seq %d, %d dropped", len(items), items[0].seq, a.buf.Dropped())
		}
		if items[0].v.CPUPercent != 52 {
			t.Fatalf("sample seq 52 carries sample number %v", items[0].v.CPUPercent)
		}
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("sampler still running after cancel")
		}
	})
}
