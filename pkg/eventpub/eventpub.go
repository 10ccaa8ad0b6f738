// Package eventpub stores Herald events in JetStream: the one publishing path shared by ingest
// (its EventService and agent events) and the edges (connection events), so every event on the
// wire has the same canonical form.
package eventpub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
)

// ErrUnavailable is wrapped by Publish errors that come from NATS (unreachable, no
// acknowledgement in time, no stream for the subject) rather than from the event itself.
var ErrUnavailable = errors.New("event bus unavailable")

// Publish normalizes ev in place (time, scope, null object), validates it and publishes
// json.Marshal(ev) on subject.ForEvent(ev) through JetStream, returning the stream sequence
// once NATS has acknowledged it. Errors wrap event.ErrInvalid for a bad event and
// ErrUnavailable for NATS failures (and ctx.Err() when ctx ended first). opts are passed to
// js.Publish, for example jetstream.WithExpectStream.
func Publish(ctx context.Context, js jetstream.JetStream, ev *event.Event, opts ...jetstream.PublishOpt) (uint64, error) {
	if ev == nil {
		return 0, fmt.Errorf("%w: event: must be set", event.ErrInvalid)
	}
	ev.Normalize(time.Now())
	if err := ev.Validate(); err != nil {
		return 0, err
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		// Validate has checked Object and Original are valid JSON; nothing else can fail.
		return 0, fmt.Errorf("%w: %w", event.ErrInvalid, err)
	}
	subj := subject.ForEvent(ev)
	ack, err := js.Publish(ctx, subj, payload, opts...)
	if err != nil {
		return 0, fmt.Errorf("%w: publish %s: %w", ErrUnavailable, subj, err)
	}
	return ack.Sequence, nil
}
