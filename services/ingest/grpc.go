package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventpub"
	"github.com/heraldhq/herald/pkg/subject"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// eventServer is the gRPC adapter of Service: conversion and error mapping only.
type eventServer struct {
	heraldv1.UnimplementedEventServiceServer
	svc *Service
}

// Publish implements heraldv1.EventServiceServer. Callers authenticate like AgentService's
// and need DRP's claim for posting events, events.post.<type>; an event that names no
// principal gets the caller's.
func (g *eventServer) Publish(ctx context.Context, req *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error) {
	who, err := g.svc.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	ev, err := g.permitted(who, req.GetEvent())
	if err != nil {
		return nil, err
	}
	ack, err := g.svc.PublishID(ctx, req.GetEvent().GetId(), ev)
	if err != nil {
		return nil, g.statusError(ctx, err)
	}
	return publishResponse(ev, ack), nil
}

// permitted converts and validates the wire event and checks who may post it, filling in the caller as
// principal when the event names none. Errors are gRPC statuses.
func (g *eventServer) permitted(who caller, pe *heraldv1.Event) (*event.Event, error) {
	ev, err := eventFromProto(pe)
	if err == nil {
		// A bad event is the caller's error whatever it may post.
		err = checkEvent(pe.GetId(), ev)
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, invalidMessage(err))
	}
	if err := g.svc.authorize(who, "events", "post", ev.Type); err != nil {
		return nil, err
	}
	if ev.Principal == "" {
		ev.Principal = who.principal
	}
	return ev, nil
}

func publishResponse(ev *event.Event, ack eventpub.Ack) *heraldv1.PublishResponse {
	return &heraldv1.PublishResponse{
		Sequence:  ack.Sequence,
		Subject:   subject.ForEvent(ev),
		Time:      timestamppb.New(ev.Time),
		Id:        ack.ID,
		Duplicate: ack.Duplicate,
	}
}

// streamWindow bounds the events of one PublishStream sent to NATS and not yet answered:
// enough to keep the bus busy over a round trip, and a fixed cost per stream (the responses
// wait in a queue of this many).
const streamWindow = 1024

// streamed is one PublishStream event between being sent to NATS and being answered.
type streamed struct {
	ev      *event.Event
	pending *Pending
	err     error // refused before publishing (conversion, permission)
}

// PublishStream implements heraldv1.EventServiceServer: the caller authenticates once, each
// event is checked like Publish's and sent to NATS at once, and a second goroutine answers
// the events in order as their acknowledgements arrive. The receiving side blocks only when
// streamWindow events are unanswered, which is the stream's flow control.
func (g *eventServer) PublishStream(stream grpc.BidiStreamingServer[heraldv1.PublishStreamRequest, heraldv1.PublishStreamResponse]) error {
	ctx := stream.Context()
	who, err := g.svc.authenticate(ctx)
	if err != nil {
		return err
	}
	// Two more than the queue: the one being answered and the one waiting to be queued.
	p, err := g.svc.NewPipeline(streamWindow + 2)
	if err != nil {
		return g.statusError(ctx, err)
	}
	defer p.Close()
	if err := p.WaitReady(ctx); err != nil {
		return g.statusError(ctx, err)
	}
	queue := make(chan streamed, streamWindow)
	answered := make(chan error, 1)
	go func() { answered <- g.answer(ctx, stream, queue) }()
	recvErr := g.receive(ctx, stream, who, p, queue)
	close(queue)
	sendErr := <-answered
	if recvErr != nil {
		return recvErr
	}
	return sendErr
}

// receive reads the stream's events, publishes each and queues it to be answered, until the
// caller closes its side (nil) or the stream fails.
func (g *eventServer) receive(ctx context.Context, stream grpc.BidiStreamingServer[heraldv1.PublishStreamRequest, heraldv1.PublishStreamResponse], who caller, p *Pipeline, queue chan<- streamed) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !who.expires.IsZero() && time.Now().After(who.expires) {
			// The stream authenticated once; it must not outlive its token. Events already
			// received are still answered.
			return status.Error(codes.Unauthenticated, "token expired: open a new stream with a fresh token")
		}
		var s streamed
		if s.ev, s.err = g.permitted(who, req.GetEvent()); s.err == nil {
			s.pending = p.Publish(req.GetEvent().GetId(), s.ev)
		}
		select {
		case queue <- s:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// answer sends one response per queued event, in order. After a failed Send it keeps draining
// the queue so that receive never blocks on it, and returns the Send error.
func (g *eventServer) answer(ctx context.Context, stream grpc.BidiStreamingServer[heraldv1.PublishStreamRequest, heraldv1.PublishStreamResponse], queue <-chan streamed) error {
	var sendErr error
	var index uint64
	for s := range queue {
		if sendErr != nil {
			continue
		}
		resp := &heraldv1.PublishStreamResponse{Index: index}
		index++
		err := s.err
		if err == nil {
			var ack eventpub.Ack
			if ack, err = s.pending.Wait(ctx); err == nil {
				resp.Outcome = &heraldv1.PublishStreamResponse_Ack{Ack: publishResponse(s.ev, ack)}
			} else {
				err = g.statusError(ctx, err)
			}
		}
		if err != nil {
			st := status.Convert(err)
			resp.Outcome = &heraldv1.PublishStreamResponse_Error{Error: &heraldv1.PublishError{
				Code: int32(st.Code()), Message: st.Message(),
			}}
		}
		sendErr = stream.Send(resp)
	}
	return sendErr
}

// statusError maps a Publish error to its gRPC status: the only place this file decides
// what a client sees. NATS details are logged, not sent.
func (g *eventServer) statusError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, event.ErrInvalid):
		return status.Error(codes.InvalidArgument, invalidMessage(err))
	case ctx.Err() != nil:
		// The caller's own deadline or cancellation, not ours.
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, context.DeadlineExceeded):
		g.svc.log.Warn("publish not acknowledged", "err", err)
		return status.Errorf(codes.Unavailable, "event bus did not acknowledge the event within %s", g.svc.cfg.PublishTimeout)
	default:
		g.svc.log.Warn("publish failed", "err", err)
		return status.Error(codes.Unavailable, "event bus unavailable, retry later")
	}
}

// invalidMessage turns a validation error into the client's message, naming the field from
// the request's point of view: "invalid event: type: must not be empty" becomes
// "event.type: must not be empty".
func invalidMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), event.ErrInvalid.Error()+": ")
	if strings.HasPrefix(msg, "event") {
		return msg
	}
	return "event." + msg
}

// eventFromProto converts the wire event. Object and Original become compact JSON; an
// unset Value stays empty (Normalize turns an empty Object into null). Errors wrap
// event.ErrInvalid and name the field.
func eventFromProto(pe *heraldv1.Event) (*event.Event, error) {
	if pe == nil {
		return nil, fmt.Errorf("%w: event: must be set", event.ErrInvalid)
	}
	ev := &event.Event{
		Type:      pe.GetType(),
		Action:    pe.GetAction(),
		Key:       pe.GetKey(),
		Scope:     pe.GetScope(),
		Principal: pe.GetPrincipal(),
	}
	if ts := pe.GetTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, fmt.Errorf("%w: time: %w", event.ErrInvalid, err)
		}
		ev.Time = ts.AsTime()
	}
	var err error
	if ev.Object, err = valueJSON(pe.GetObject()); err != nil {
		return nil, fmt.Errorf("%w: object: %w", event.ErrInvalid, err)
	}
	if ev.Original, err = valueJSON(pe.GetOriginal()); err != nil {
		return nil, fmt.Errorf("%w: original: %w", event.ErrInvalid, err)
	}
	return ev, nil
}

// valueJSON renders v as compact JSON. protojson varies its whitespace on purpose, so the
// output is compacted to keep the payload on NATS deterministic.
func valueJSON(v *structpb.Value) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := protojson.Marshal(v)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
