// Package registry records who is connected to which Herald instance: every live WebSocket
// (browser, CLI, agent) and every REST request in flight, fleet-wide, so any edge can answer
// Digital Rebar's connections API for the whole cluster.
//
// A Registry stores entries with a deadline: the holding instance refreshes them, and an entry
// whose instance died without a goodbye expires on its own and is swept (exactly once, by any
// instance) so that a connections.delete event can be published for it. Memory (all-in-one)
// and Redis (a cluster) implement it; registrytest.Run is the contract both pass. Services do
// not use a Registry directly but a Tracker, which never lets a registry outage reach a
// request path.
package registry

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// Conn is one connection. Its JSON is PascalCase because it is also the body of the DRP-style
// connections API (GET /api/v3/connections) and the Object of connections.* events.
type Conn struct {
	// ID is unique across the fleet; the Tracker assigns it.
	ID string `json:"ID"`
	// RemoteAddr is the client's ip:port as the holding instance sees it; DRP's key.
	RemoteAddr string `json:"RemoteAddr"`
	// Principal is "user:<name>", "agent:<key id>" or "unknown".
	Principal string `json:"Principal"`
	// CreateTime is when the connection was accepted (UTC).
	CreateTime time.Time `json:"CreateTime"`
	// Websocket is false for a REST request in flight.
	Websocket bool `json:"Websocket"`
	// Instance is the Herald process holding the connection (edge or ingest instance id).
	Instance string `json:"Instance"`
	// Endpoint is what the client speaks: "drp", "metrics", "logs", "agent", "rest".
	Endpoint string `json:"Endpoint"`
	// ServerID is the monitored server: the agent's own for "agent", the watched one for
	// "metrics" and "logs".
	ServerID string `json:"ServerID,omitempty"`
}

// Query selects connections; an empty field matches everything.
type Query struct {
	Instance  string
	ServerID  string
	Principal string
	Endpoint  string
}

// Matches reports whether c satisfies q.
func (q Query) Matches(c Conn) bool {
	return (q.Instance == "" || q.Instance == c.Instance) &&
		(q.ServerID == "" || q.ServerID == c.ServerID) &&
		(q.Principal == "" || q.Principal == c.Principal) &&
		(q.Endpoint == "" || q.Endpoint == c.Endpoint)
}

// ErrNotFound is returned by Get when no live connection has that remote address.
var ErrNotFound = errors.New("registry: connection not found")

// ErrInvalid is wrapped by errors about a malformed Conn.
var ErrInvalid = errors.New("registry: invalid connection")

// SweepLimit bounds the entries one Sweep removes, so a sweep never holds Redis for long.
const SweepLimit = 1000

// Registry stores the fleet's connections. Every method may be called concurrently.
type Registry interface {
	// Add stores c (replacing an entry with the same ID) until now+ttl. The newest entry wins
	// the RemoteAddr index.
	Add(ctx context.Context, c Conn, ttl time.Duration) error
	// Remove deletes the entry; removing an unknown ID is not an error.
	Remove(ctx context.Context, id string) error
	// Refresh moves the deadline of the given entries to now+ttl and returns the IDs it does
	// not hold (never added, swept, or lost with a Redis restart), for the caller to Add again.
	Refresh(ctx context.Context, ids []string, ttl time.Duration) (missing []string, err error)
	// List returns the live entries matching q, oldest first.
	List(ctx context.Context, q Query) ([]Conn, error)
	// Get returns the live entry with that remote address, or ErrNotFound.
	Get(ctx context.Context, remoteAddr string) (Conn, error)
	// Sweep removes up to SweepLimit entries whose deadline passed and returns them. Each
	// expired entry is returned by exactly one Sweep, whichever instance calls it.
	Sweep(ctx context.Context) ([]Conn, error)
}

func validate(c Conn) error {
	switch {
	case c.ID == "":
		return errors.Join(ErrInvalid, errors.New("ID: must not be empty"))
	case c.Instance == "":
		return errors.Join(ErrInvalid, errors.New("Instance: must not be empty"))
	}
	return nil
}

// sortConns orders by CreateTime, then ID, so listings are stable.
func sortConns(cs []Conn) {
	slices.SortFunc(cs, func(a, b Conn) int {
		if c := a.CreateTime.Compare(b.CreateTime); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
