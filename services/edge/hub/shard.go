package hub

import (
	"context"
	"sync/atomic"

	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/wsconn"
)

// shard is one goroutine that hands messages to a fixed share of the clients, so that a burst
// is fanned out on every core while each client still gets its events from one goroutine, in
// the dispatcher's order. It encodes a message once per encoder among its own clients.
type shard struct {
	i    int       // the shard's part in every topic
	jobs chan *job // bounded by Config.ShardQueue; the dispatcher is the only sender
	fc   frameCache
	w    wsconn.Writer // writes the burst's connections once it is handed out
}

// A shard hands out at most this much before it writes to the sockets, so the first frame of a
// long burst does not wait for the last, and a burst of large events cannot by itself fill a
// client's send queue (in messages or bytes) before any of it is written.
const (
	maxBurst      = 16
	maxBurstBytes = 256 << 10
)

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
			// Whatever else is already queued joins the burst: each client's frames of it
			// then leave in one write.
			size := len(j.m.Data)
		burst:
			for n := 1; n < maxBurst && size < maxBurstBytes; n++ {
				select {
				case j = <-s.jobs:
					h.deliver(s, j)
					size += len(j.m.Data)
				default:
					break burst
				}
			}
			s.w.Flush()
		}
	}
}

// deliver hands one message to the shard's members of its topic. Shard goroutine only.
func (h *Hub) deliver(s *shard, j *job) {
	p := j.t.parts[s.i].Load() // not nil: dispatch sends only to shards with a part
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
		var ok bool
		if c.via != nil {
			ok = c.via.DeliverVia(frame, j.m.Seq, &s.w)
		} else {
			ok = c.sink.Deliver(frame, j.m.Seq)
		}
		if ok {
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
