package resumeclient

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// Publisher publishes events through several ingests and records what the stream
// acknowledged. An error is never taken for a success: the event is published again, with the
// same id through the next ingest, until one acknowledges it; the id makes the retry store it
// at most once, so an event that an erroring call stored anyway is acknowledged with its one
// sequence.
type Publisher struct {
	Ingests []heraldv1.EventServiceClient
	Token   string
	Type    string // every event is <Type>.tick.<i>
	// Deadline bounds the retries of one event; 30s when zero.
	Deadline time.Duration

	mu     sync.Mutex
	acked  []Acked
	errors []Failed
}

// Failed is one publish call that returned an error.
type Failed struct {
	At  time.Time
	Err string
}

// Acked is one event the stream acknowledged.
type Acked struct {
	Seq uint64
	Key string
	At  time.Time
}

// Publish publishes event i (key strconv.Itoa(i)) and returns once the stream acknowledged it.
func (p *Publisher) Publish(ctx context.Context, i int) error {
	deadline := p.Deadline
	if deadline == 0 {
		deadline = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.Token), deadline)
	defer cancel()
	key := strconv.Itoa(i)
	ev := &heraldv1.Event{Id: p.Type + "-" + key, Type: p.Type, Action: "tick", Key: key}
	for try := 0; ; try++ {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		resp, err := p.Ingests[(i+try)%len(p.Ingests)].Publish(cctx, &heraldv1.PublishRequest{Event: ev})
		ccancel()
		if err == nil {
			p.mu.Lock()
			p.acked = append(p.acked, Acked{Seq: resp.GetSequence(), Key: key, At: time.Now()})
			p.mu.Unlock()
			return nil
		}
		p.mu.Lock()
		p.errors = append(p.errors, Failed{At: time.Now(), Err: status.Convert(err).Message()})
		p.mu.Unlock()
		// A short pause: an ingest that has no NATS node answers at once.
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: not acknowledged after %d tries: %w (last error)", key, try+1, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Acked is every acknowledged event in the stream's order.
func (p *Publisher) Acked() []Acked {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.acked)
	slices.SortFunc(out, func(a, b Acked) int { return cmpSeq(a.Seq, b.Seq) })
	return out
}

// Errors is every failed publish call, in order.
func (p *Publisher) Errors() []Failed {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.errors)
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
