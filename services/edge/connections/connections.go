// Package connections serves Digital Rebar's connections API (GET /api/v3/connections and friends, as DRP serves them) and
// Herald's gRPC ConnectionService, fleet-wide: the listing comes from the shared registry, so
// any edge answers for every instance.
//
//	GET /api/v3/connections                      every live connection
//	GET /api/v3/connections/{RemoteAddr}         one, by remote address (DRP's key)
//	GET /api/v3/machines/{uuid}/connections      the agent connections of that server id
//	DELETE /api/v3/connections/{RemoteAddr}      kick it (close 4003), as ConnectionService.Kick
//
// Credentials are DRP's (Authorization Bearer/Basic, or ?token=). The caller needs
// connections.list.<principal> for each connection it sees; connections.list.* (or an
// admin's *.*.*) sees all. Errors are DRP models.Error bodies. Each request is itself listed
// while in flight (Websocket false, Endpoint "rest").
package connections

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/services/edge/drpapi"
)

// Paths of the API.
const (
	ListPath    = "/api/v3/connections"
	GetPath     = "/api/v3/connections/{addr}"
	MachinePath = "/api/v3/machines/{uuid}/connections"
)

// EndpointREST names REST requests in flight in the registry.
const EndpointREST = "rest"

// listTimeout bounds a registry listing: a request never waits on Redis for longer.
const listTimeout = 2 * time.Second

// Handler serves the API.
type Handler struct {
	Auth    *access.Authenticator
	Tracker *registry.Tracker // this instance's tracker; its Registry is the fleet's
	NC      *nats.Conn        // carries kicks to the holding instance
	Log     *slog.Logger
}

// Register mounts the REST routes on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET "+ListPath, h.rest(h.list))
	mux.Handle("GET "+GetPath, h.rest(h.get))
	mux.Handle("GET "+MachinePath, h.rest(h.machine))
	mux.Handle("DELETE "+GetPath, h.rest(h.kick))
}

// rest authenticates a request. The edge's TrackREST lists it as in flight, as every request.
func (h *Handler) rest(serve func(http.ResponseWriter, *http.Request, access.Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := h.Auth.Request(r)
		if err != nil {
			drpapi.WriteAuthError(w, err)
			return
		}
		serve(w, r, sess)
	})
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, sess access.Session) {
	h.answerList(w, r, sess, registry.Query{})
}

func (h *Handler) machine(w http.ResponseWriter, r *http.Request, sess access.Session) {
	h.answerList(w, r, sess, registry.Query{ServerID: r.PathValue("uuid"), Endpoint: "agent"})
}

func (h *Handler) answerList(w http.ResponseWriter, r *http.Request, sess access.Session, q registry.Query) {
	if !MayList(sess) {
		writeError(w, http.StatusForbidden, "", "permission denied: needs connections.list.*")
		return
	}
	cs, err := List(r.Context(), h.Tracker, sess, q)
	if err != nil {
		h.Log.Warn("connections: listing failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "", "the connection registry is unavailable, try again")
		return
	}
	writeJSON(w, cs)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, sess access.Session) {
	addr := r.PathValue("addr")
	c, err := Get(r.Context(), h.Tracker, sess, addr)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		writeError(w, http.StatusNotFound, addr, "connection "+addr+" not found")
	case errors.Is(err, ErrForbidden):
		writeError(w, http.StatusForbidden, addr, "permission denied: needs connections.list.*")
	case err != nil:
		h.Log.Warn("connections: get failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, addr, "the connection registry is unavailable, try again")
	default:
		writeJSON(w, c)
	}
}

// kick is the REST form of ConnectionService.Kick, for browsers (the console), which cannot
// speak gRPC: 200 with the kicked connection.
func (h *Handler) kick(w http.ResponseWriter, r *http.Request, sess access.Session) {
	addr := r.PathValue("addr")
	c, err := lookup(r.Context(), h.Tracker, addr)
	if err == nil && !visible(sess, "kick", c) {
		err = ErrForbidden
	}
	if err == nil {
		err = registry.Kick(r.Context(), h.NC, c, sess.Principal())
	}
	switch {
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrNotHeld):
		writeError(w, http.StatusNotFound, addr, "connection "+addr+" not found")
	case errors.Is(err, ErrForbidden):
		writeError(w, http.StatusForbidden, addr, "permission denied: needs connections.kick.<principal>")
	case errors.Is(err, registry.ErrNotKickable):
		writeError(w, http.StatusConflict, addr, "a REST request cannot be kicked")
	case err != nil:
		h.Log.Warn("connections: kick failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, addr, "kick: the connection registry or its instance is unavailable, try again")
	default:
		h.Log.Info("connection kicked", "remote_addr", c.RemoteAddr, "instance", c.Instance, "by", sess.Principal())
		writeJSON(w, c)
	}
}

// ErrForbidden means the session may not see or kick that connection.
var ErrForbidden = errors.New("connections: permission denied")

// MayList reports whether the session may list at least some connections.
func MayList(sess access.Session) bool {
	return len(event.Allowed(listAny, sess.Filters)) > 0
}

// listAny is connections.list.*, parsed once.
var listAny = event.Filter{Type: []string{"connections"}, Action: []string{"list"}}

func visible(sess access.Session, action string, c registry.Conn) bool {
	return sess.Permitted(&event.Event{Type: registry.EventType, Action: action, Key: c.Principal, Scope: event.ScopeGlobal})
}

// List returns the fleet's connections matching q that sess may see, oldest first. This
// instance's own connections are always included, even while the registry is behind or
// down; the registry's failure is an error only when it leaves nothing to show of the others.
func List(ctx context.Context, t *registry.Tracker, sess access.Session, q registry.Query) ([]registry.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	fleet, err := t.Registry().List(ctx, q)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(fleet))
	out := make([]registry.Conn, 0, len(fleet))
	for _, c := range fleet {
		seen[c.ID] = struct{}{}
		if visible(sess, "list", c) {
			out = append(out, c)
		}
	}
	for _, c := range t.Held() {
		if _, ok := seen[c.ID]; !ok && q.Matches(c) && visible(sess, "list", c) {
			out = append(out, c)
		}
	}
	sortByTime(out)
	return out, nil
}

// Get returns the connection with remote address addr, from this instance or the fleet.
func Get(ctx context.Context, t *registry.Tracker, sess access.Session, addr string) (registry.Conn, error) {
	c, err := lookup(ctx, t, addr)
	if err != nil {
		return registry.Conn{}, err
	}
	if !visible(sess, "list", c) {
		return registry.Conn{}, ErrForbidden
	}
	return c, nil
}

// lookup finds a connection by remote address, here first, then in the fleet.
func lookup(ctx context.Context, t *registry.Tracker, addr string) (registry.Conn, error) {
	var c registry.Conn
	found := false
	for _, h := range t.Held() {
		if h.RemoteAddr == addr {
			c, found = h, true
		}
	}
	if !found {
		ctx, cancel := context.WithTimeout(ctx, listTimeout)
		defer cancel()
		var err error
		if c, err = t.Registry().Get(ctx, addr); err != nil {
			return registry.Conn{}, err
		}
	}
	return c, nil
}

func sortByTime(cs []registry.Conn) {
	// Both inputs are sorted; the local additions are few, so a simple insertion sort.
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].CreateTime.Before(cs[j-1].CreateTime); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, key, msg string) {
	drpapi.WriteError(w, drpapi.Error{Model: "connections", Key: key, Type: "API_ERROR", Messages: []string{msg}, Code: code})
}
