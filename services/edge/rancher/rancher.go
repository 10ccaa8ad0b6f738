// Package rancher speaks Rancher 2's norman v3 subscribe socket (seed 000, protocols.md §1a):
// GET /v3/subscribe, /v3/clusters/{id}/subscribe and /v3/projects/{id}/subscribe push
// {"name":"resource.change","data":<object>} and {"name":"resource.remove","data":<object>}
// frames, where the object carries its own "type" and "id", and {"name":"ping","data":{}}
// every 5 s. The client cannot steer the socket: whatever it sends is read and ignored.
//
// Scopes. An event belongs to one scope (event.Event.Scope):
//
//	global          the /v3/subscribe socket: management objects, including the cluster and
//	                project objects themselves (Type "cluster", "project", ...)
//	cluster:<id>    the /v3/clusters/<id>/subscribe socket: that cluster's objects (nodes, ...)
//	project:<id>    the /v3/projects/<id>/subscribe socket: that project's objects (workloads, ...)
//
// A socket subscribes to its own scope only, narrowed by the repeatable resourceTypes query
// parameter (matched against the event Type) and by the token's permissions; the hub holds one
// NATS subscription per distinct filter. Unlike norman, a resourceTypes list that names no known
// type is not a 404: Herald has no schema list, so the socket simply waits for such events.
//
// Credentials, as Rancher's API auth reads them: the Authorization header first (Bearer <herald
// token>, or Basic user:password in URL-safe or standard base64, which logs in through the auth
// service), else the R_SESS cookie holding a Herald token. A browser sends that cookie from any
// page, so a cookie-authenticated request must come from an Origin the operator allowed (or the
// edge's own host); anything else is 403 before the upgrade. No credentials is 401 with a norman
// error body.
//
// Where norman drops the TCP connection without a close frame (the 1006 of seed 000), Herald
// always closes with a code and a reason: 1001 on shutdown, 4000 for a slow consumer, 4001 when
// the token expires.
package rancher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
)

// The three norman subscribe endpoints, as http.ServeMux patterns (method excluded).
const (
	GlobalPath  = "/v3/subscribe"
	ClusterPath = "/v3/clusters/{id}/subscribe"
	ProjectPath = "/v3/projects/{id}/subscribe"
)

// Endpoint names rancher sockets in the connection registry.
const Endpoint = "rancher"

// CookieName is the session cookie Rancher's UIs authenticate with.
const CookieName = "R_SESS"

// DefaultPingInterval is norman's keep-alive period.
const DefaultPingInterval = 5 * time.Second

// MaxResourceTypes bounds the resourceTypes a socket may ask for.
const MaxResourceTypes = 32

// Scope returns the event scope a socket at level ("global", "cluster" or "project") with id
// listens to: "global", "cluster:<id>" or "project:<id>". Publishers use the same strings.
func Scope(level, id string) string {
	if level == "global" || level == "" {
		return event.ScopeGlobal
	}
	return level + ":" + id
}

// Handler serves the three subscribe endpoints; mount it on all of them.
type Handler struct {
	Hub      *hub.Hub
	Auth     *access.Authenticator
	Upgrader *wsconn.Upgrader
	Log      *slog.Logger
	// AllowedOrigins are the Origins (scheme://host[:port]) from which a browser may open a
	// cookie-authenticated socket, besides the edge's own host. "*" allows any (not advised).
	AllowedOrigins []string
	PingInterval   time.Duration     // 0: DefaultPingInterval
	Now            func() time.Time  // nil: time.Now
	Tracker        *registry.Tracker // records the connection fleet-wide; nil: not recorded
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// pingFrame is norman's keep-alive.
var pingFrame = []byte(`{"name":"ping","data":{}}`)

// ServeHTTP authenticates, checks the Origin of cookie-authenticated requests, upgrades and
// subscribes the socket to its scope.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	scope, ok := scopeOf(r)
	if !ok {
		writeError(w, http.StatusNotFound, "NotFound", "unknown subscribe path")
		return
	}
	sess, byCookie, err := h.authenticate(r)
	switch {
	case errors.Is(err, access.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "authentication is unavailable, try again")
		return
	case err != nil:
		writeError(w, http.StatusUnauthorized, "Unauthorized", err.Error())
		return
	}
	if byCookie && !h.originAllowed(r) {
		writeError(w, http.StatusForbidden, "Forbidden",
			fmt.Sprintf("origin %q may not use the %s cookie; send an Authorization header or ask the operator to allow the origin", r.Header.Get("Origin"), CookieName))
		return
	}
	types := resourceTypes(r.URL.Query())
	if len(types) > MaxResourceTypes {
		writeError(w, http.StatusBadRequest, "InvalidOption", fmt.Sprintf("at most %d resourceTypes", MaxResourceTypes))
		return
	}
	subjects, err := subjectsFor(scope, types, sess.Filters)
	if err != nil {
		writeError(w, http.StatusForbidden, "PermissionDenied", err.Error())
		return
	}
	conn, err := h.Upgrader.Upgrade(w, r, h.Log)
	if err != nil {
		h.Log.Debug("rancher: upgrade failed", "err", err)
		return
	}
	client, err := h.Hub.NewClient(conn, Encoder{})
	if err != nil {
		conn.Close(wsconn.DisconnectShutdown)
		go func() { _ = conn.ReadLoop(func([]byte) {}) }()
		return
	}
	untrack, self := func() {}, registry.Conn{}
	if h.Tracker != nil {
		self, untrack = h.Tracker.Track(registry.Conn{RemoteAddr: r.RemoteAddr, Principal: sess.Principal(),
			Websocket: true, Endpoint: Endpoint}, func(reason string) { conn.Close(wsconn.DisconnectKicked.WithReason(reason)) })
	}
	go h.serve(conn, client, EncoderFor(types, self.ID), sess, scope, subjects, untrack)
}

// serve runs one socket until it ends.
func (h *Handler) serve(conn *wsconn.Conn, client *hub.Client, enc Encoder, sess access.Session, scope string, subjects []string, untrack func()) {
	defer untrack()
	defer h.Hub.Remove(client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := h.Hub.SubscribeWith(ctx, client, enc, subjects)
	cancel()
	if err != nil {
		h.Log.Warn("rancher: subscribe failed", "scope", scope, "err", err)
		conn.Close(wsconn.DisconnectInternal.WithReason("cannot subscribe now, try again"))
		_ = conn.ReadLoop(func([]byte) {})
		return
	}
	defer sess.Watch(h.now(), conn.Close)()
	interval := h.PingInterval
	if interval <= 0 {
		interval = DefaultPingInterval
	}
	go keepAlive(conn, interval)
	// Norman reads only to notice the close; messages are discarded.
	err = conn.ReadLoop(func([]byte) {})
	h.Log.Debug("rancher: connection ended", "principal", sess.Principal(), "scope", scope, "err", err)
}

// keepAlive sends norman's ping frame every interval until the connection ends.
func keepAlive(conn *wsconn.Conn, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-conn.Done():
			return
		case <-t.C:
			if !conn.Send(pingFrame) {
				return
			}
		}
	}
}

// scopeOf maps the request path to the socket's scope.
func scopeOf(r *http.Request) (string, bool) {
	id := r.PathValue("id")
	switch {
	case r.URL.Path == GlobalPath:
		return event.ScopeGlobal, true
	case id != "" && strings.HasPrefix(r.URL.Path, "/v3/clusters/"):
		return Scope("cluster", id), true
	case id != "" && strings.HasPrefix(r.URL.Path, "/v3/projects/"):
		return Scope("project", id), true
	}
	return "", false
}

// resourceTypes reads the repeatable resourceTypes parameter (a comma list is accepted too).
// sockId and socketId, the UIs' connection counters, are ignored like everything else.
func resourceTypes(q url.Values) []string {
	var out []string
	for _, v := range q["resourceTypes"] {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// subjectsFor is the NATS subjects a socket in scope holds: its scope and types (nil: all),
// narrowed by the token's permissions.
func subjectsFor(scope string, types []string, perms []event.Filter) ([]string, error) {
	want := event.Filter{Scope: []string{scope}, Type: types}
	allowed := event.Allowed(want, perms)
	if len(allowed) == 0 {
		return nil, fmt.Errorf("your permissions allow no events in scope %s", scope)
	}
	subjects, err := subject.ForFilters(allowed)
	if err != nil {
		return nil, fmt.Errorf("subscription too wide: %w", err)
	}
	return subjects, nil
}

// authenticate reads Rancher's credentials: the Authorization header wins over the cookie.
// byCookie reports that the R_SESS cookie carried them.
func (h *Handler) authenticate(r *http.Request) (sess access.Session, byCookie bool, err error) {
	ctx := r.Context()
	if hdr := strings.TrimSpace(r.Header.Get("Authorization")); hdr != "" {
		sess, err = h.Auth.Header(ctx, hdr)
		return sess, false, err
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		sess, err = h.Auth.Token(ctx, c.Value)
		return sess, true, err
	}
	return sess, false, fmt.Errorf("%w: must authenticate: send Authorization: Bearer <token> or Basic, or the %s cookie", access.ErrDenied, CookieName)
}

// originAllowed reports whether a cookie-authenticated request comes from an allowed Origin:
// one in AllowedOrigins, or the edge's own host. A request without an Origin is refused: every
// browser sends one on a WebSocket handshake, and non-browser clients can send a header instead.
func (h *Handler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range h.AllowedOrigins {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	return false
}

// apiError is norman's httperror body.
type apiError struct {
	Type     string `json:"type"`
	BaseType string `json:"baseType"`
	Status   int    `json:"status"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiError{Type: "error", BaseType: "error", Status: status, Code: code, Message: msg})
}

// Encoder renders events as norman frames. It is comparable, so the hub encodes each event once
// for every rancher socket on a filter. The zero value leaves out Herald's own types; see
// EncoderFor.
type Encoder struct {
	internal bool   // Herald's own types were asked for
	self     string // the socket's connection id, whose own connection event is left out
}

// Encode implements hub.Encoder: payload is an event as ingest publishes it. Action "remove",
// "delete" or "removed" is resource.remove; anything else resource.change (norman has no
// resource.create).
func (e Encoder) Encode(_ string, payload []byte) ([]byte, error) {
	var ev event.Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("rancher: decode event: %w", err)
	}
	if e.skips(&ev) {
		return nil, hub.ErrSkip
	}
	data, err := Object(&ev)
	if err != nil {
		return nil, err
	}
	name := "resource.change"
	switch ev.Action {
	case "remove", "delete", "removed":
		name = "resource.remove"
	}
	b := make([]byte, 0, len(data)+40)
	b = append(b, `{"name":"`...)
	b = append(b, name...)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return append(b, '}'), nil
}

// Object is the frame's data: the event's Object with "type" (the event Type) and "id" (the
// event Key) added when absent, since the UIs route on data.type and index on data.id. An
// Object that is not a JSON object becomes {"id":<key>,"type":<type>,"value":<object>}.
func Object(ev *event.Event) (json.RawMessage, error) {
	obj, err := ev.ObjectFields()
	if err != nil {
		return nil, fmt.Errorf("rancher: %w", err)
	}
	for k, v := range map[string]string{"type": ev.Type, "id": ev.Key} {
		if _, ok := obj[k]; !ok {
			s, _ := json.Marshal(v)
			obj[k] = s
		}
	}
	return json.Marshal(obj)
}
