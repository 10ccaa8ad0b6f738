// Package eventpub stores Herald events in JetStream: the one publishing path shared by ingest
// (its EventService and agent events) and the edges (connection events), so every event on the
// wire has the same canonical form and carries an id that makes a retry idempotent.
package eventpub

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
)

// ErrUnavailable is wrapped by Publish errors that come from NATS (unreachable, no
// acknowledgement in time, no stream for the subject) rather than from the event itself.
var ErrUnavailable = errors.New("event bus unavailable")

// MaxIDBytes bounds an event id; ids are printable ASCII, so they travel in a NATS header.
const MaxIDBytes = 128

// Ack is JetStream's answer for one stored event.
type Ack struct {
	Sequence  uint64 // in the stream; for a duplicate, the original event's
	ID        string // the event's id, the caller's or a generated one
	Duplicate bool   // an event with this id was already stored; nothing new was
}

// NewID returns a fresh random event id (26 base32 characters, 130 bits).
func NewID() string { return rand.Text() }

// CheckID reports an id that cannot be an event id: longer than MaxIDBytes or holding
// anything but printable ASCII. The error wraps event.ErrInvalid and names the field.
func CheckID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("%w: id: longer than %d bytes", event.ErrInvalid, MaxIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return fmt.Errorf("%w: id: only printable ASCII without spaces is allowed", event.ErrInvalid)
		}
	}
	return nil
}

// NewMsg normalizes ev in place (time, scope, null object), validates it and returns the NATS
// message that stores it: json.Marshal(ev) on subject.ForEvent(ev), with id (NewID() when
// empty) in subject.MsgIDHeader. Errors wrap event.ErrInvalid.
func NewMsg(ev *event.Event, id string) (*nats.Msg, string, error) {
	if ev == nil {
		return nil, "", fmt.Errorf("%w: event: must be set", event.ErrInvalid)
	}
	if id == "" {
		id = NewID()
	} else if err := CheckID(id); err != nil {
		return nil, "", err
	}
	ev.Normalize(time.Now())
	if err := ev.Validate(); err != nil {
		return nil, "", err
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		// Validate has checked Object and Original are valid JSON; nothing else can fail.
		return nil, "", fmt.Errorf("%w: %w", event.ErrInvalid, err)
	}
	msg := &nats.Msg{Subject: subject.ForEvent(ev), Data: payload, Header: nats.Header{}}
	msg.Header.Set(subject.MsgIDHeader, id)
	return msg, id, nil
}

// Publish stores ev through JetStream with a generated id and returns the stream sequence
// once NATS has acknowledged it. Errors wrap event.ErrInvalid for a bad event and
// ErrUnavailable for NATS failures (and ctx.Err() when ctx ended first). opts are passed to
// js.PublishMsg, for example jetstream.WithExpectStream.
func Publish(ctx context.Context, js jetstream.JetStream, ev *event.Event, opts ...jetstream.PublishOpt) (uint64, error) {
	ack, err := PublishID(ctx, js, "", ev, opts...)
	return ack.Sequence, err
}

// PublishID is Publish with the caller's id (empty: generated): publishing the same id again
// within the stream's duplicate window stores nothing and answers with the original sequence.
func PublishID(ctx context.Context, js jetstream.JetStream, id string, ev *event.Event, opts ...jetstream.PublishOpt) (Ack, error) {
	msg, id, err := NewMsg(ev, id)
	if err != nil {
		return Ack{}, err
	}
	ack, err := js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return Ack{}, fmt.Errorf("%w: publish %s: %w", ErrUnavailable, msg.Subject, err)
	}
	return Ack{Sequence: ack.Sequence, ID: id, Duplicate: ack.Duplicate}, nil
}
