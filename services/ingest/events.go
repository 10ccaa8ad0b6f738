package ingest

import (
	"context"
	"encoding/json"
	"time"

	"github.com/heraldhq/herald/pkg/event"
)

// eventQueue bounds the agent events (online, offline, facts, alerts, jobs) waiting for the
// event worker. Agent sockets never wait for JetStream: a full queue drops the event, counted
// and logged (workqueue).
const eventQueue = 4096

// emit queues an event for the worker Run started. It never blocks.
func (s *Service) emit(typ, action, key, principal string, object any) {
	obj, err := json.Marshal(object)
	if err != nil {
		s.log.Error("agent event not encodable", "type", typ, "action", action, "err", err)
		return
	}
	s.events.Offer(&event.Event{Time: time.Now(), Type: typ, Action: action, Key: key,
		Scope: event.ScopeGlobal, Principal: principal, Object: obj})
}

func (s *Service) publishEvent(ctx context.Context, ev *event.Event) {
	if _, err := s.Publish(ctx, ev); err != nil {
		s.log.Warn("agent event not published", "type", ev.Type, "action", ev.Action, "key", ev.Key, "err", err)
	}
}
