package ingest

import (
	"context"
	"encoding/json"
	"time"

	"github.com/heraldhq/herald/pkg/event"
)

// eventQueue bounds the agent events (online, offline, facts, alerts, jobs) waiting for the
// event worker. Agent sockets never wait for JetStream: a full queue drops the event, logged.
const eventQueue = 4096

// emit queues an event for the worker Run started. It never blocks.
func (s *Service) emit(typ, action, key, principal string, object any) {
	obj, err := json.Marshal(object)
	if err != nil {
		s.log.Error("agent event not encodable", "type", typ, "action", action, "err", err)
		return
	}
	ev := &event.Event{Time: time.Now(), Type: typ, Action: action, Key: key,
		Scope: event.ScopeGlobal, Principal: principal, Object: obj}
	select {
	case s.events <- ev:
	default:
		s.log.Warn("agent event dropped: queue full", "type", typ, "action", action, "key", key)
	}
}

// runEvents publishes queued events in order until stop closes, then publishes what is still
// queued within one PublishTimeout and closes done.
func (s *Service) runEvents(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case ev := <-s.events:
			s.publishEvent(context.Background(), ev)
		case <-stop:
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
			defer cancel()
			for {
				select {
				case ev := <-s.events:
					s.publishEvent(ctx, ev)
				default:
					return
				}
			}
		}
	}
}

func (s *Service) publishEvent(ctx context.Context, ev *event.Event) {
	if _, err := s.Publish(ctx, ev); err != nil {
		s.log.Warn("agent event not published", "type", ev.Type, "action", ev.Action, "key", ev.Key, "err", err)
	}
}
