package salt

import (
	"context"
	"encoding/json"
	"time"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/registry"
)

// A connected agent is a minion whether or not it has sent facts: Salt lists every minion
// that is up, with the grains it has (none is fine). Agents online at ready come from the
// connection registry, later ones from agents.online events; facts fill the grains in.

// loadOnline puts the permitted servers with an agent connected now into the view.
func (c *conn) loadOnline(ctx context.Context, v *view) {
	if c.h.Runtime.Tracker == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conns, err := c.h.Runtime.Tracker.Registry().List(ctx, registry.Query{Endpoint: "agent"})
	if err != nil {
		c.ws.Log().Warn("salt: connected agents not listed", "err", err)
		return
	}
	for _, a := range conns {
		if a.ServerID == "" {
			continue
		}
		ev := event.Event{Scope: event.ScopeGlobal, Type: "agents", Action: "online", Key: a.ServerID}
		if c.sess.Permitted(&ev) {
			v.apply(&ev)
		}
	}
}

// online adds the minion id, without grains, unless it is known; it reports whether it was
// added.
func (v *view) online(id string) bool {
	if _, ok := v.minions[id]; ok || id == "" {
		return false
	}
	v.minions[id] = minion{ID: id, Grains: json.RawMessage("{}")}
	return true
}
