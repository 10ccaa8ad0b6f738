package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/pkg/event"
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
	ev, err := eventFromProto(req.GetEvent())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, invalidMessage(err))
	}
	if err := g.svc.authorize(who, "events", "post", ev.Type); err != nil {
		return nil, err
	}
	if ev.Principal == "" {
		ev.Principal = who.principal
	}
	seq, err := g.svc.Publish(ctx, ev)
	if err != nil {
		return nil, g.statusError(ctx, err)
	}
	return &heraldv1.PublishResponse{
		Sequence: seq,
		Subject:  subject.ForEvent(ev),
		Time:     timestamppb.New(ev.Time),
	}, nil
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
