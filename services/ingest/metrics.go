package ingest

import (
	"errors"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/metrics"
)

// observePublish records one Publish: its duration when it was stored, its reason when not.
func observePublish(start time.Time, err *error) {
	switch {
	case *err == nil:
		metrics.IngestPublishSeconds.Observe(time.Since(start).Seconds())
	case errors.Is(*err, event.ErrInvalid):
		metrics.IngestPublishErrors.WithLabelValues("invalid").Inc()
	default:
		metrics.IngestPublishErrors.WithLabelValues("unavailable").Inc()
	}
}

// observeCommand records the outcome of one command or Docker action sent to an agent.
func observeCommand(kind string, r agentwire.RPCReply, err error) {
	outcome := "ok"
	switch {
	case errors.Is(err, ErrAgentOffline):
		outcome = "offline"
	case errors.Is(err, ErrAgentTimeout):
		outcome = "timeout"
	case err != nil:
		outcome = "error"
	case r.Code != "":
		outcome = "failed"
	}
	metrics.IngestCommands.WithLabelValues(kind, outcome).Inc()
}

// observeAgent counts an agent in (+1, once authenticated) or out (-1, when it goes).
func observeAgent(delta float64) { metrics.IngestAgents.Add(delta) }

// observeSample counts one metrics sample received from an agent.
func observeSample() { metrics.IngestSamples.Inc() }
