package ingest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventpub"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
)

// ErrUnavailable is wrapped by Publish errors that come from NATS (unreachable, no
// acknowledgement in time, stream missing) rather than from the event itself. It is
// eventpub.ErrUnavailable itself, so the error is wrapped once and reads "event bus
// unavailable" once, whichever package a caller tests against.
var ErrUnavailable = eventpub.ErrUnavailable

// Bounds on the retries while the stream cannot be ensured: quick at first, since NATS is
// often just starting, and never more often than every few seconds after.
const (
	ensureFirstBackoff = 100 * time.Millisecond
	ensureMaxBackoff   = 5 * time.Second
)

// Publish normalizes ev in place (time, scope, null object), validates it and stores it in
// the event stream under a generated id, returning the stream sequence once NATS has
// acknowledged it. Errors wrap event.ErrInvalid for a bad event and ErrUnavailable for NATS
// failures; when ctx ends first, the error wraps ctx.Err(). The payload is exactly
// json.Marshal(ev), the canonical form every edge decodes.
func (s *Service) Publish(ctx context.Context, ev *event.Event) (uint64, error) {
	ack, err := s.PublishID(ctx, "", ev)
	return ack.Sequence, err
}

// PublishID is Publish with the caller's event id (empty: generated). Publishing an id again
// within the stream's duplicate window stores nothing and is answered with the original
// sequence and Duplicate set, so a caller may retry a publish that timed out.
func (s *Service) PublishID(ctx context.Context, id string, ev *event.Event) (ack eventpub.Ack, err error) {
	defer observePublish(time.Now(), &err)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	// Check the event before waiting for the stream: a bad event is the caller's error
	// whatever the state of NATS.
	if err := checkEvent(id, ev); err != nil {
		return eventpub.Ack{}, err
	}
	select {
	case <-s.ready:
	case <-ctx.Done():
		return eventpub.Ack{}, fmt.Errorf("ingest: %w: stream %s not ready: %w", ErrUnavailable, StreamName, ctx.Err())
	}
	// ExpectStream makes NATS refuse the message unless it lands in our stream, so an
	// acknowledgement always means "stored in HERALD_EVENTS".
	ack, err = eventpub.PublishID(ctx, s.js, id, ev, jetstream.WithExpectStream(StreamName))
	if err != nil {
		return eventpub.Ack{}, fmt.Errorf("ingest: %w", err)
	}
	return ack, nil
}

// checkEvent normalizes and validates ev and its id; a nil ev is left to eventpub to refuse.
func checkEvent(id string, ev *event.Event) error {
	if err := eventpub.CheckID(id); err != nil {
		return err
	}
	if ev == nil {
		return nil
	}
	ev.Normalize(time.Now())
	return ev.Validate()
}

// streamConfig is the HERALD_EVENTS configuration derived from the service settings.
func (s *Service) streamConfig() jetstream.StreamConfig {
	return eventstream.StreamConfig(s.cfg.StreamMaxAge, s.cfg.StreamMaxBytes, s.cfg.StreamReplicas)
}

// ensureStream creates HERALD_EVENTS or updates its limits, retrying with a bounded backoff
// while NATS is unreachable or its cluster cannot place the stream yet. Any other error from
// the JetStream API (a rejected configuration, replicas on a single server, JetStream
// disabled) is returned at once: retrying would not fix it.
func (s *Service) ensureStream(ctx context.Context) error {
	backoff := ensureFirstBackoff
	for {
		err := s.tryEnsureStream(ctx)
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if (errors.As(err, &apiErr) && !clusterNotReady(apiErr)) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return fmt.Errorf("ingest: ensure stream %s: %w", StreamName, err)
		}
		s.log.Warn("event stream not ready, retrying", "stream", StreamName, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, ensureMaxBackoff)
	}
}

// JetStream API errors that a NATS cluster gives while it is forming or has lost nodes: no
// quorum or meta leader yet (503s: temporarily unavailable, insufficient resources while it
// has not heard from every peer), no leader to handle the request, or too few peers online
// to place the replicas. They pass once the nodes are back.
const (
	errCodeClusterNoPeers   jetstream.ErrorCode = 10005
	errCodeClusterNotLeader jetstream.ErrorCode = 10009
)

func clusterNotReady(err *jetstream.APIError) bool {
	return err.Code == 503 || err.ErrorCode == errCodeClusterNoPeers || err.ErrorCode == errCodeClusterNotLeader
}

// tryEnsureStream creates or updates both of ingest's streams: HERALD_EVENTS, and
// HERALD_TELEMETRY, where the agents' samples, alerts and log entries go.
func (s *Service) tryEnsureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	for _, cfg := range []jetstream.StreamConfig{s.streamConfig(), s.telemetryConfig()} {
		if _, err := s.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// CheckStream is ingest's readiness check that HERALD_EVENTS accepts writes: it publishes to
// subject.EventStreamProbe expecting a last sequence the stream cannot have. The stream's
// leader answers "wrong last sequence", which proves it is there and takes publishes, and
// stores nothing. Any other answer (no JetStream, no leader, no reply) fails the check.
func (s *Service) CheckStream(ctx context.Context) error {
	_, err := s.js.Publish(ctx, subject.EventStreamProbe, nil,
		jetstream.WithExpectStream(StreamName), jetstream.WithExpectLastSequence(math.MaxUint64))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return nil
	}
	if err == nil {
		return nil // stored after all (a stream at that sequence): it takes writes
	}
	return fmt.Errorf("stream %s does not take writes: %w", StreamName, err)
}
