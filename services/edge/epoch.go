package edge

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
)

// epochs keeps the event stream's epoch, which every position this edge hands out carries.
// It is looked up at start (retrying until the stream exists: ingest creates it), again at once
// when the hub sees sequences start over (the stream was created anew), and every
// epochRefresh in case that went unseen. Until it is known, events carry no position.
type epochs struct {
	js   jetstream.JetStream
	log  *slog.Logger
	v    atomic.Value // string
	kick chan struct{}
}

// epochRefresh and epochRetry pace the lookups once the epoch is known, and until it is.
const (
	epochRefresh = 30 * time.Second
	epochRetry   = time.Second
)

func newEpochs(js jetstream.JetStream, log *slog.Logger) *epochs {
	e := &epochs{js: js, log: log, kick: make(chan struct{}, 1)}
	e.v.Store("")
	return e
}

// get is the current epoch, "" while unknown.
func (e *epochs) get() string { return e.v.Load().(string) }

// reset forgets the epoch and asks for a lookup now; it never blocks (the hub's dispatcher
// calls it).
func (e *epochs) reset() {
	e.v.Store("")
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// run looks the epoch up until ctx ends.
func (e *epochs) run(ctx context.Context) {
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		epoch, err := eventstream.Epoch(lctx, e.js)
		cancel()
		wait := epochRefresh
		if err != nil {
			wait = epochRetry
			e.log.Debug("event stream epoch not known yet", "err", err)
		} else if old := e.get(); old != epoch {
			if old != "" {
				e.log.Warn("the event stream was created anew: positions start over", "epoch", epoch)
			}
			e.v.Store(epoch)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-e.kick:
			t.Stop()
		case <-t.C:
		}
	}
}
