package hub

import (
	"context"
	"sync/atomic"
	"time"

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
	// linger is armed only while a burst waits for company (Config.WriteDelay).
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	wide := uint64(0)  // deliveries of the last burst
	var last time.Time // when the last burst was written
	for {
		select {
		case <-ctx.Done():
			s.w.Flush() // what was handed out is written, so no connection waits on it
			return
		case j := <-s.jobs:
			handed := h.deliver(s, j)
			// Whatever else is already queued joins the burst: each client's frames of it
			// then leave in one write. After a wide burst the shard also waits up to
			// WriteDelay for more: at a thousand events a second to a thousand sockets, one
			// write per event per socket is a million write(2)s a second here and as many
			// wake-ups in the clients; a millisecond's wait makes each write carry several.
			// Only a busy shard waits: after a pause a lone event goes at once.
			wait := h.cfg.WriteDelay > 0 && wide >= lingerDeliveries && time.Since(last) < lingerIdle*h.cfg.WriteDelay
			armed := false
			size := len(j.m.Data)
		burst:
			for n := 1; n < maxBurst && size < maxBurstBytes; n++ {
				select {
				case j = <-s.jobs:
				default:
					if !wait {
						break burst
					}
					if !armed {
						linger.Reset(h.cfg.WriteDelay)
						armed = true
					}
					select {
					case j = <-s.jobs:
					case <-linger.C:
						armed = false
						break burst
					case <-ctx.Done():
						s.w.Flush()
						return
					}
				}
				handed += h.deliver(s, j)
				size += len(j.m.Data)
			}
			if armed {
				linger.Stop()
			}
			wide = handed
			s.w.Flush()
			last = time.Now()
		}
	}
}

// lingerDeliveries is how many frames a burst must have handed out for the next one to wait
// (Config.WriteDelay): a narrow fan-out gains little from fewer writes and keeps its latency.
const lingerDeliveries = 64

// lingerIdle: a shard whose last burst was more than this many WriteDelays ago is not busy, and
// writes its next burst at once.
const lingerIdle = 10

// deliver hands one message to the shard's members of its topic and says to how many.
// Shard goroutine only.
func (h *Hub) deliver(s *shard, j *job) uint64 {
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
	return n
}
