// Package agentstate keeps what Herald knows about each agent between its messages: the
// latest metrics sample (so a new viewer gets one at once, and so replayed samples are
// recognised), the host facts the agent sent on connect, and the state of its threshold alerts
// (so an alert raised while the agent was on one ingest is resolved by another after it moves). Memory serves the all-in-one
// process; Redis is shared by every ingest and edge of a cluster. Both pass agentstatetest.Run.
package agentstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Store is the per-server agent state.
type Store interface {
	// PutMetrics stores sample as serverID's latest when ts is after the latest stored ts and
	// reports fresh=true; otherwise (a duplicate, or an old sample replayed from an agent's
	// offline buffer) it stores nothing and reports false. The comparison and the write are
	// one atomic step, so two ingests never both see the same sample as fresh.
	PutMetrics(ctx context.Context, serverID string, ts time.Time, sample json.RawMessage) (fresh bool, err error)
	// LatestMetrics returns serverID's latest sample; false when there is none.
	LatestMetrics(ctx context.Context, serverID string) (json.RawMessage, bool, error)
	// PutFacts replaces serverID's facts.
	PutFacts(ctx context.Context, serverID string, facts json.RawMessage) error
	// Facts returns serverID's facts; false when there are none.
	Facts(ctx context.Context, serverID string) (json.RawMessage, bool, error)
	// ListFacts returns the facts of every server that has some (an empty map when none).
	ListFacts(ctx context.Context) (map[string]json.RawMessage, error)
	// PutAlerts replaces serverID's alert state (a JSON document the caller owns) and keeps
	// it for ttl after this put: the state of a server that stops sending is pruned.
	PutAlerts(ctx context.Context, serverID string, state json.RawMessage, ttl time.Duration) error
	// Alerts returns serverID's alert state; false when there is none or it was pruned.
	Alerts(ctx context.Context, serverID string) (json.RawMessage, bool, error)
}

// ErrInvalid is wrapped by errors about the arguments (an empty server id, a sample that is
// not JSON).
var ErrInvalid = errors.New("agentstate: invalid argument")

func checkTTL(serverID string, raw json.RawMessage, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl for %q must be positive, got %s", ErrInvalid, serverID, ttl)
	}
	return check(serverID, raw)
}

func check(serverID string, raw json.RawMessage) error {
	if serverID == "" {
		return fmt.Errorf("%w: server id must not be empty", ErrInvalid)
	}
	if !json.Valid(raw) {
		return fmt.Errorf("%w: value for %q is not JSON", ErrInvalid, serverID)
	}
	return nil
}

// Memory is the in-process Store. The zero value is not usable; call NewMemory.
type Memory struct {
	mu      sync.RWMutex
	metrics map[string]latest          // guarded by mu
	facts   map[string]json.RawMessage // guarded by mu
	alerts  map[string]expiring        // guarded by mu
}

type expiring struct {
	value json.RawMessage
	until time.Time
}

type latest struct {
	ts     time.Time
	sample json.RawMessage
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-process Store.
func NewMemory() *Memory {
	return &Memory{metrics: make(map[string]latest), facts: make(map[string]json.RawMessage),
		alerts: make(map[string]expiring)}
}

// PutMetrics implements Store.
func (m *Memory) PutMetrics(_ context.Context, serverID string, ts time.Time, sample json.RawMessage) (bool, error) {
	if err := check(serverID, sample); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.metrics[serverID]; ok && !ts.After(cur.ts) {
		return false, nil
	}
	m.metrics[serverID] = latest{ts: ts, sample: clone(sample)}
	return true, nil
}

// LatestMetrics implements Store.
func (m *Memory) LatestMetrics(_ context.Context, serverID string) (json.RawMessage, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	cur, ok := m.metrics[serverID]
	return clone(cur.sample), ok, nil
}

// PutFacts implements Store.
func (m *Memory) PutFacts(_ context.Context, serverID string, facts json.RawMessage) error {
	if err := check(serverID, facts); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.facts[serverID] = clone(facts)
	return nil
}

// Facts implements Store.
func (m *Memory) Facts(_ context.Context, serverID string) (json.RawMessage, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	f, ok := m.facts[serverID]
	return clone(f), ok, nil
}

// ListFacts implements Store.
func (m *Memory) ListFacts(context.Context) (map[string]json.RawMessage, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]json.RawMessage, len(m.facts))
	for id, f := range m.facts {
		out[id] = clone(f)
	}
	return out, nil
}

// PutAlerts implements Store. Each put also prunes every expired state, so the map holds only
// servers heard from within their ttl.
func (m *Memory) PutAlerts(_ context.Context, serverID string, state json.RawMessage, ttl time.Duration) error {
	if err := checkTTL(serverID, state, ttl); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for id, e := range m.alerts {
		if !now.Before(e.until) {
			delete(m.alerts, id)
		}
	}
	m.alerts[serverID] = expiring{value: clone(state), until: now.Add(ttl)}
	return nil
}

// Alerts implements Store.
func (m *Memory) Alerts(_ context.Context, serverID string) (json.RawMessage, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.alerts[serverID]
	if !ok || !time.Now().Before(e.until) {
		return nil, false, nil
	}
	return clone(e.value), true, nil
}

// clone copies raw so callers can neither change what is stored nor see later changes.
func clone(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return nil
	}
	return append(json.RawMessage(nil), raw...)
}
