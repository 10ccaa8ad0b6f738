package ingest

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/subject"
)

// Telemetry (samples, alerts, log entries) is stored in HERALD_TELEMETRY, which republishes
// it to the edges with its sequence, so every frame a viewer gets has a position to resume
// from. It is published with an acknowledgement, asynchronously: each agent's telemetry worker
// hands a message to NATS and goes on to the next, and the acknowledgements come back on their
// own. The window of unacknowledged messages is bounded per ingest (telemetryWindow); when it
// is full a publish waits at most telemetryStall, on the agent's worker, never on its read
// loop, which only queues frames.
//
// A message the stream does not acknowledge (no quorum while a node is lost, the stream
// missing, the window full, an acknowledgement that timed out) is not retried: a sample is
// superseded by the next within seconds, and a retry would store it out of order. It is
// counted (TelemetryLost, the herald_ingest_telemetry_lost_total counter) and logged. Edges
// read only what the stream stored, so every viewer sees the same sequence, live or replaying,
// with no hole between what one saw live and another replayed; a message counted lost because
// its acknowledgement timed out may still have been stored, and then every viewer gets it.
// Alerts follow the same rule: while the stream cannot take writes (no quorum) they are not
// delivered either, and the counter and the log say so.
const (
	telemetryWindow = 4096
	telemetryStall  = 200 * time.Millisecond
)

// telemetryPublisher is the JetStream context publishTelemetry uses; its own, so its window
// and error handler are the telemetry's alone.
func (s *Service) telemetryPublisher() (jetstream.JetStream, error) {
	js, err := jetstream.New(s.nc,
		jetstream.WithPublishAsyncMaxPending(telemetryWindow),
		jetstream.WithPublishAsyncTimeout(s.cfg.PublishTimeout),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			s.telemetryNotStored(m.Subject, err)
		}))
	if err != nil {
		return nil, fmt.Errorf("ingest: telemetry jetstream: %w", err)
	}
	return js, nil
}

// publishTelemetry stores one sample, alert or log entry in HERALD_TELEMETRY without waiting
// for the acknowledgement (see above).
func (s *Service) publishTelemetry(subj string, data []byte) {
	// ExpectStream: an acknowledgement means stored in HERALD_TELEMETRY, nowhere else.
	_, err := s.tele.PublishAsync(subj, data, jetstream.WithExpectStream(subject.TelemetryStream),
		jetstream.WithStallWait(telemetryStall))
	if err != nil {
		s.telemetryNotStored(subj, err)
	}
}

// telemetryNotStored counts and logs one message the stream did not take; the log is thinned
// out (the first, then every thousandth), since a lost node fails every publish for a while.
func (s *Service) telemetryNotStored(subj string, err error) {
	metrics.IngestTelemetryLost.Inc()
	if n := s.telemetryLost.Add(1); n == 1 || n%1000 == 0 {
		s.log.Warn("telemetry not stored; viewers will not see it", "subject", subj, "lost", n, "err", err)
	}
}

// TelemetryLost is the number of samples, alerts and log entries HERALD_TELEMETRY did not
// acknowledge.
func (s *Service) TelemetryLost() uint64 { return s.telemetryLost.Load() }

// telemetryConfig is the HERALD_TELEMETRY configuration derived from the service settings;
// it has as many replicas as the event stream.
func (s *Service) telemetryConfig() jetstream.StreamConfig {
	return eventstream.TelemetryConfig(s.cfg.TelemetryMaxAge, s.cfg.TelemetryMaxBytes, s.cfg.StreamReplicas)
}
