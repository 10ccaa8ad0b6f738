package agent

import "sync"

// sampleBuffer keeps metrics samples until the ingest acknowledges them. It
// is a ring of fixed capacity: when the agent is offline for longer than the
// ring covers, the oldest samples go first, and the number dropped is
// counted so the loss is logged, never silent.
//
// Sequence numbers are assigned by Push and strictly increase, so "send
// everything after seq N" and "forget everything up to seq N" are the only
// two questions the connection needs to ask.
type sampleBuffer[T any] struct {
	mu      sync.Mutex
	items   []seqItem[T] // ring storage, len == capacity
	head    int          // index of the oldest item
	n       int          // number of items held
	nextSeq uint64       // seq of the next Push; starts at 1
	dropped uint64       // items evicted before they were acknowledged

	// notify receives a value (without blocking) after each Push, so a
	// sender can wait for new samples instead of polling.
	notify chan struct{}
}

type seqItem[T any] struct {
	seq uint64
	v   T
}

func newSampleBuffer[T any](capacity int) *sampleBuffer[T] {
	return &sampleBuffer[T]{
		items:   make([]seqItem[T], max(capacity, 1)),
		nextSeq: 1,
		notify:  make(chan struct{}, 1),
	}
}

// Push stores v under the next sequence number and returns that number and
// whether the oldest item had to be evicted to make room.
func (b *sampleBuffer[T]) Push(v T) (seq uint64, evicted bool) {
	b.mu.Lock()
	seq = b.nextSeq
	b.nextSeq++
	if b.n == len(b.items) {
		b.head = (b.head + 1) % len(b.items)
		b.n--
		b.dropped++
		evicted = true
	}
	b.items[(b.head+b.n)%len(b.items)] = seqItem[T]{seq: seq, v: v}
	b.n++
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
	return seq, evicted
}

// After returns, oldest first, the items with a sequence number above seq.
func (b *sampleBuffer[T]) After(seq uint64) []seqItem[T] {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []seqItem[T]
	for i := range b.n {
		it := b.items[(b.head+i)%len(b.items)]
		if it.seq > seq {
			out = append(out, it)
		}
	}
	return out
}

// Ack forgets every item with a sequence number up to and including seq and
// returns how many it removed. Acks are cumulative because the connection
// (re)sends the whole buffer in order before anything newer, and the ingest
// handles one agent's frames in order: an ack for N means everything before
// N on that connection was received too.
func (b *sampleBuffer[T]) Ack(seq uint64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	removed := 0
	for b.n > 0 && b.items[b.head].seq <= seq {
		b.items[b.head] = seqItem[T]{} // let the sample be collected
		b.head = (b.head + 1) % len(b.items)
		b.n--
		removed++
	}
	return removed
}

// Len returns the number of unacknowledged items held.
func (b *sampleBuffer[T]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Dropped returns how many items were evicted unacknowledged so far.
func (b *sampleBuffer[T]) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
