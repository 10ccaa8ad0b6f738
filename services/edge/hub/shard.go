package hub

import (
	"context"
	"sync/atomic"

	"github.com/heraldhq/herald/pkg/metrics"
)

// shard is one goroutine that hands messages to a fixed share of the clients, so that a burst
// is fanned out on every core while each client still gets its events from one goroutine, in
// the dispatcher's order. It encodes a message once per encoder among its own clients.
type shard struct {
	i    int       // the shard's part in every topic
	jobs chan *job // bounded by Config.ShardQueue; the dispatcher is the only sender
	fc   frameCache
}

// job is one message on its way to the shards, shared by all of them and never changed once
// sent.
type job struct {
	t *topic
	m Message
	// failed is set by the first shard whose encoder could not render the message, so the
	// message is counted and logged once however many shards saw the failure.
	failed atomic.Bool
}

func (h *Hub) runShard(ctx context.Context, s *shard) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.jobs:
			h.deliver(s, j)
		}
	}
}

// deliver hands one message to the shard's members of its topic. Shard goroutine only.
func (h *Hub) deliver(s *shard, j *job) {
	p := &j.t.parts[s.i]
	fc := &s.fc
	fc.reset()
	var n uint64
	p.mu.RLock()
	for _, mb := range p.members {
		c := mb.c
		if !c.firstMatch(j.t.subject, j.m.Subject) {
			continue
		}
		frame, err := fc.frame(mb.enc, &j.m)
		if err != nil {
			continue // counted once below; other encoders' members still get it
		}
		if c.sink.Deliver(frame, j.m.Seq) {
			n++
		}
	}
	p.mu.RUnlock()
	if len(fc.failed) > 0 && j.failed.CompareAndSwap(false, true) {
		h.undecodable.Add(1)
		droppedEncode.Inc()
		h.log.Warn("event not delivered to some clients: cannot encode", "subject", j.m.Subject, "err", fc.failed[0])
	}
	h.delivered.Add(n)
	metrics.EdgeDeliveries.Add(float64(n))
}
