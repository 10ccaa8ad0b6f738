// Package workqueue is the one bounded queue with a worker that Herald puts between a path that
// must never wait (a socket's read loop, a connection being tracked) and slow work behind it
// (a Redis write, a JetStream publish). Offer never blocks: a full queue drops the item, counts
// it and logs it (the first drop and then every power of two, so an outage does not flood the
// log). Run handles items in order on one goroutine and, once its context ends, handles what is
// still queued under one shared deadline, so a shutdown never waits once per item.
package workqueue

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Queue is a bounded FIFO of T handled by Run. Create it with New; it is safe for concurrent
// Offer calls.
type Queue[T any] struct {
	name    string
	items   chan T
	handle  func(ctx context.Context, item T)
	log     *slog.Logger
	dropped atomic.Uint64
}

// New returns a queue of at most size items (at least 1) that Run hands to handle. name says in
// logs what is dropped ("agent event", "telemetry"); log nil discards.
func New[T any](name string, size int, log *slog.Logger, handle func(ctx context.Context, item T)) *Queue[T] {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue[T]{name: name, items: make(chan T, max(size, 1)), handle: handle, log: log}
}

// Offer queues item and reports true, or drops it when the queue is full: never blocks.
func (q *Queue[T]) Offer(item T) bool {
	select {
	case q.items <- item:
		return true
	default:
	}
	n := q.dropped.Add(1)
	if n&(n-1) == 0 { // 1, 2, 4, 8, ...: visible at once, bounded during an outage
		q.log.Warn(q.name+" dropped: queue full", "dropped_total", n, "queue", cap(q.items))
	}
	return false
}

// Dropped is the number of items Offer dropped.
func (q *Queue[T]) Dropped() uint64 { return q.dropped.Load() }

// Len is the number of items waiting.
func (q *Queue[T]) Len() int { return len(q.items) }

// Run handles items (with context.Background: each handler bounds its own work) until ctx
// ends, then handles what is still queued with a context that ends drain after ctx did, and
// returns the number of items it left unhandled when that deadline passed.
func (q *Queue[T]) Run(ctx context.Context, drain time.Duration) (abandoned int) {
	for {
		if ctx.Err() != nil { // ended: select would pick between items and Done at random
			return q.drain(drain)
		}
		select {
		case item := <-q.items:
			q.handle(context.Background(), item)
		case <-ctx.Done():
			return q.drain(drain)
		}
	}
}

func (q *Queue[T]) drain(d time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		select {
		case item := <-q.items:
			q.handle(ctx, item)
		default:
			return 0
		}
	}
	n := len(q.items)
	if n > 0 {
		q.log.Warn(q.name+" abandoned at shutdown: drain deadline passed", "count", n, "drain", d)
	}
	return n
}
