package registry

import (
	"context"
	"sync"
	"time"
)

// Memory is the Registry of a single process (the all-in-one mode without Redis).
type Memory struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[string]memEntry // by ID
	byAddr  map[string]string   // RemoteAddr -> ID, newest wins
}

type memEntry struct {
	conn     Conn
	deadline time.Time
}

var _ Registry = (*Memory)(nil)

// NewMemory returns an empty in-process Registry.
func NewMemory() *Memory {
	return &Memory{now: time.Now, entries: map[string]memEntry{}, byAddr: map[string]string{}}
}

// Add implements Registry.
func (m *Memory) Add(_ context.Context, c Conn, ttl time.Duration) error {
	if err := validate(c); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[c.ID] = memEntry{conn: c, deadline: m.now().Add(ttl)}
	if c.RemoteAddr != "" {
		m.byAddr[c.RemoteAddr] = c.ID
	}
	return nil
}

// Remove implements Registry.
func (m *Memory) Remove(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeLocked(id)
	return nil
}

func (m *Memory) removeLocked(id string) (Conn, bool) {
	e, ok := m.entries[id]
	if !ok {
		return Conn{}, false
	}
	delete(m.entries, id)
	if m.byAddr[e.conn.RemoteAddr] == id {
		delete(m.byAddr, e.conn.RemoteAddr)
	}
	return e.conn, true
}

// Refresh implements Registry.
func (m *Memory) Refresh(_ context.Context, ids []string, ttl time.Duration) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var missing []string
	for _, id := range ids {
		e, ok := m.entries[id]
		if !ok || !now.Before(e.deadline) {
			// An expired entry is as good as swept: the caller adds it again, which also
			// restores its RemoteAddr index.
			missing = append(missing, id)
			continue
		}
		e.deadline = now.Add(ttl)
		m.entries[id] = e
	}
	return missing, nil
}

// List implements Registry.
func (m *Memory) List(_ context.Context, q Query) ([]Conn, error) {
	m.mu.Lock()
	now := m.now()
	out := make([]Conn, 0, len(m.entries))
	for _, e := range m.entries {
		if now.Before(e.deadline) && q.Matches(e.conn) {
			out = append(out, e.conn)
		}
	}
	m.mu.Unlock()
	sortConns(out)
	return out, nil
}

// Get implements Registry.
func (m *Memory) Get(_ context.Context, remoteAddr string) (Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[m.byAddr[remoteAddr]]
	if !ok || !m.now().Before(e.deadline) {
		return Conn{}, ErrNotFound
	}
	return e.conn, nil
}

// Sweep implements Registry.
func (m *Memory) Sweep(_ context.Context) ([]Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []Conn
	for id, e := range m.entries {
		if len(out) == SweepLimit {
			break
		}
		if !now.Before(e.deadline) {
			c, _ := m.removeLocked(id)
			out = append(out, c)
		}
	}
	sortConns(out)
	return out, nil
}
