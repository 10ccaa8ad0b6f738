package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventpub"
)

// Pipeline publishes one caller's events without waiting for each acknowledgement before
// sending the next: JetStream async publishes, answered in the order they were made. It has
// its own JetStream context, so its window of unacknowledged events and its reply
// subscription are its own and one busy caller never stalls another. A Pipeline is used by
// one goroutine publishing and one waiting; Close releases it.
type Pipeline struct {
	svc *Service
	js  jetstream.JetStream
}

// Pending is one pipelined event: either already failed, or waiting for its acknowledgement.
type Pending struct {
	id  string
	fut jetstream.PubAckFuture
	err error
}

// NewPipeline returns a Pipeline allowing up to window events published and not yet
// acknowledged; Publish blocks (briefly) beyond that. Each acknowledgement is awaited at most
// the configured publish timeout.
func (s *Service) NewPipeline(window int) (*Pipeline, error) {
	js, err := jetstream.New(s.nc,
		jetstream.WithPublishAsyncMaxPending(window),
		jetstream.WithPublishAsyncTimeout(s.cfg.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("%w: jetstream: %w", ErrUnavailable, err)
	}
	return &Pipeline{svc: s, js: js}, nil
}

// WaitReady waits until the event stream exists, bounded by ctx and the publish timeout.
func (p *Pipeline) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.svc.cfg.PublishTimeout)
	defer cancel()
	select {
	case <-p.svc.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: stream %s not ready: %w", ErrUnavailable, StreamName, ctx.Err())
	}
}

// Publish normalizes and validates ev as Service.PublishID does and sends it without waiting
// for NATS. The outcome is read with Pending.Wait; an invalid event's Pending has already
// failed.
func (p *Pipeline) Publish(id string, ev *event.Event) *Pending {
	msg, id, err := eventpub.NewMsg(ev, id)
	if err != nil {
		return &Pending{err: err}
	}
	fut, err := p.js.PublishMsgAsync(msg, jetstream.WithExpectStream(StreamName))
	if err != nil {
		return &Pending{id: id, err: fmt.Errorf("%w: publish %s: %w", ErrUnavailable, msg.Subject, err)}
	}
	return &Pending{id: id, fut: fut}
}

// Wait returns the event's acknowledgement, or why it was not stored. The pipeline's publish
// timeout bounds it; ctx ends it earlier.
func (e *Pending) Wait(ctx context.Context) (eventpub.Ack, error) {
	if e.err != nil {
		return eventpub.Ack{}, e.err
	}
	select {
	case ack := <-e.fut.Ok():
		return eventpub.Ack{Sequence: ack.Sequence, ID: e.id, Duplicate: ack.Duplicate}, nil
	case err := <-e.fut.Err():
		if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return eventpub.Ack{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case <-ctx.Done():
		return eventpub.Ack{}, ctx.Err()
	}
}

// Close stops waiting for acknowledgements still outstanding (they fail) and drops the
// pipeline's reply subscription.
func (p *Pipeline) Close() { p.js.CleanupPublisher() }
