package agent

import (
	"slices"
	"testing"
)

func seqs[T any](items []seqItem[T]) []uint64 {
	var out []uint64
	for _, it := range items {
		out = append(out, it.seq)
	}
	return out
}

func TestSampleBufferKeepsOrderAndAcksCumulatively(t *testing.T) {
	b := newSampleBuffer[string](4)
	for _, v := range []string{"a", "b", "c"} {
		if _, ev := b.Push(v); ev {
			t.Fatalf("push %q evicted below capacity", v)
		}
	}
	if got := seqs(b.After(0)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("After(0) = %v", got)
	}
	if got := seqs(b.After(2)); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("After(2) = %v", got)
	}
	if n := b.Ack(2); n != 2 {
		t.Fatalf("Ack(2) removed %d, want 2", n)
	}
	if n := b.Ack(2); n != 0 {
		t.Fatalf("repeated Ack(2) removed %d, want 0", n)
	}
	items := b.After(0)
	if len(items) != 1 || items[0].v != "c" || items[0].seq != 3 {
		t.Fatalf("after ack: %+v", items)
	}
}

func TestSampleBufferEvictsOldestAndCounts(t *testing.T) {
	b := newSampleBuffer[int](3)
	evictions := 0
	for i := range 10 {
		if _, ev := b.Push(i); ev {
			evictions++
		}
	}
	if evictions != 7 || b.Dropped() != 7 {
		t.Fatalf("evictions %d, Dropped %d, want 7", evictions, b.Dropped())
	}
	items := b.After(0)
	if got := seqs(items); !slices.Equal(got, []uint64{8, 9, 10}) {
		t.Fatalf("kept %v, want the newest three", got)
	}
	if items[0].v != 7 || items[2].v != 9 {
		t.Fatalf("values %+v", items)
	}
	// Wrap-around after acks: capacity is reused without losing order.
	b.Ack(9)
	b.Push(10)
	b.Push(11)
	if got := seqs(b.After(0)); !slices.Equal(got, []uint64{10, 11, 12}) {
		t.Fatalf("after wrap %v", got)
	}
	if b.Dropped() != 7 {
		t.Fatalf("Dropped changed to %d without an eviction", b.Dropped())
	}
}

func TestSampleBufferNotifies(t *testing.T) {
	b := newSampleBuffer[int](2)
	select {
	case <-b.notify:
		t.Fatal("notified before any push")
	default:
	}
	b.Push(1)
	b.Push(2) // coalesces with the first notification
	select {
	case <-b.notify:
	default:
		t.Fatal("no notification after push")
	}
	select {
	case <-b.notify:
		t.Fatal("notifications did not coalesce")
	default:
	}
}
