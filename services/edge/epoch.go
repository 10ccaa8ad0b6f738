package edge

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
)

// epochs keeps the epoch of each stream the edge reads (events, telemetry), which every
// position this edge hands out from that stream carries. Each is looked up at start (retrying
// until the stream exists: ingest creates them), again at once when the hub sees a stream's
// sequences start over (it was created anew), and every epochRefresh in case that went unseen.
// Until a stream's epoch is known, its messages carry no position.
type epochs struct {
	js   jetstream.JetStream
	log  *slog.Logger
	v    map[string]*atomic.Value // string, by stream; the map is fixed by newEpochs
	kick chan struct{}
}

// epochRefresh and epochRetry pace the lookups once every epoch is known, and until then.
const (
	epochRefresh = 30 * time.Second
	epochRetry   = time.Second
)

func newEpochs(js jetstream.JetStream, log *slog.Logger, streams ...string) *epochs {
	e := &epochs{js: js, log: log, v: make(map[string]*atomic.Value, len(streams)), kick: make(chan struct{}, 1)}
	for _, s := range streams {
		e.v[s] = &atomic.Value{}
		e.v[s].Store("")
	}
	return e
}

// get is stream's current epoch, "" while unknown (or for a stream the edge does not read).
func (e *epochs) get(stream string) string {
	if v := e.v[stream]; v != nil {
		return v.Load().(string)
	}
	return ""
}

// reset forgets stream's epoch and asks for a lookup now; it never blocks (the hub's
// dispatcher calls it).
func (e *epochs) reset(stream string) {
	if v := e.v[stream]; v != nil {
		v.Store("")
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// run looks the epochs up until ctx ends.
func (e *epochs) run(ctx context.Context) {
	for {
		wait := epochRefresh
		for stream, v := range e.v {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			epoch, err := eventstream.EpochIn(lctx, e.js, stream)
			cancel()
			if err != nil {
				wait = epochRetry
				e.log.Debug("stream epoch not known yet", "stream", stream, "err", err)
				continue
			}
			if old := v.Load().(string); old != epoch {
				if old != "" {
					e.log.Warn("a stream was created anew: its positions start over", "stream", stream, "epoch", epoch)
				}
				v.Store(epoch)
			}
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
