// Package rancher speaks Rancher 2's norman v3 subscribe socket :
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
// Where norman drops the TCP connection without a close frame (the 1006 Rancher's users report), Herald
// always closes with a code and a reason: 1001 on shutdown, 4000 for a slow consumer, 4001 when
// the token expires.
package rancher

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/socket"
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

// Handler serves the three subscribe endpoints on the edge's socket runtime; mount it on all
// of them.
type Handler struct {
	Runtime *socket.Runtime
	// AllowedOrigins are the Origins (scheme://host[:port]) from which a browser may open a
	// cookie-authenticated socket, besides the edge's own host. "*" allows any (not advised).
	AllowedOrigins []string
	PingInterval   time.Duration // 0: DefaultPingInterval
}

// pingFrame is norman's keep-alive.
var pingFrame = []byte(`{"name":"ping","data":{}}`)

// ServeHTTP runs one subscribe socket.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.Runtime.Serve(w, r, Endpoint, h)
}

// refusal is an HTTP answer in norman's error shape.
type refusal struct {
	status int
	code   string
	msg    string
}

func (e *refusal) Error() string { return e.msg }

// Accept authenticates, checks the Origin of cookie-authenticated requests and works out the
// socket's subjects: its scope and resourceTypes within the token's permissions.
func (h *Handler) Accept(r *http.Request) (socket.Handler, *access.Session, error) {
	scope, ok := scopeOf(r)
	if !ok {
		return nil, nil, &refusal{http.StatusNotFound, "NotFound", "unknown subscribe path"}
	}
	sess, byCookie, err := h.authenticate(r)
	switch {
	case errors.Is(err, access.ErrUnavailable):
		return nil, nil, &refusal{http.StatusServiceUnavailable, "ServiceUnavailable", "authentication is unavailable, try again"}
	case err != nil:
		return nil, nil, &refusal{http.StatusUnauthorized, "Unauthorized", err.Error()}
	}
	if byCookie && !h.originAllowed(r) {
		return nil, nil, &refusal{http.StatusForbidden, "Forbidden",
			fmt.Sprintf("origin %q may not use the %s cookie; send an Authorization header or ask the operator to allow the origin", r.Header.Get("Origin"), CookieName)}
	}
	types := resourceTypes(r.URL.Query())
	if len(types) > MaxResourceTypes {
		return nil, nil, &refusal{http.StatusBadRequest, "InvalidOption", fmt.Sprintf("at most %d resourceTypes", MaxResourceTypes)}
	}
	subjects, err := subjectsFor(scope, types, sess.Filters)
	if err != nil {
		return nil, nil, &refusal{http.StatusForbidden, "PermissionDenied", err.Error()}
	}
	interval := h.PingInterval
	if interval <= 0 {
		interval = DefaultPingInterval
	}
	q := r.URL.Query()
	since := q.Get("since")
	if since == "" {
		since = q.Get("resourceVersion") // what Kubernetes watch clients send
	}
	return &subscription{subjects: subjects, types: types, interval: interval, since: since}, &sess, nil
}

// Refuse writes norman's error body.
func (h *Handler) Refuse(w http.ResponseWriter, err error) {
	var e *refusal
	if !errors.As(err, &e) {
		e = &refusal{http.StatusInternalServerError, "ServerError", "internal error"}
	}
	writeError(w, e.status, e.code, e.msg)
}

// subscription is one socket: subscribed to its subjects at open, pinged, and deaf.
type subscription struct {
	subjects []string
	types    []string // resourceTypes asked for; nil: all
	interval time.Duration
	since    string // the position to resume from; "" none
}

// Open subscribes the socket and starts norman's pings. With ?since=<position> (or
// resourceVersion=, as Kubernetes watches send it) the socket first replays the stored events
// after it, then says how that went (resumeFrame) and goes live.
func (c *subscription) Open(s *socket.Socket) error {
	enc := EncoderFor(c.types, s.ConnID())
	client, err := s.Client(enc)
	if err != nil {
		return err
	}
	if c.since != "" {
		s.Hold()
	}
	if err := s.Subscribe(client, nil, c.subjects); err != nil {
		return err
	}
	go keepAlive(s, c.interval)
	if c.since != "" {
		if err := s.Resume(enc, c.subjects, c.since, func(r socket.Resumed) { s.Send(resumeFrame(r)) }); err != nil {
			s.Send(errorFrame(http.StatusBadRequest, "InvalidOption", err.Error()))
			s.Release()
		}
	}
	return nil
}

// resumeFrame tells a resuming client how it went: caught up, or, like a Kubernetes watch's
// 410 Gone, "too old" (list afresh; live events follow).
func resumeFrame(r socket.Resumed) []byte {
	if r.TooOld {
		return errorFrame(http.StatusGone, "Gone", "too old: position "+r.From+" is before the oldest stored event or from another stream; list afresh")
	}
	b, _ := json.Marshal(map[string]any{"name": "resource.resumed", "data": map[string]any{
		"from": r.From, "position": r.To, "replayed": r.Replayed}})
	return b
}

// errorFrame is a resource.error frame with norman's error body as data.
func errorFrame(status int, code, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"name": "resource.error", "data": apiError{
		Type: "error", BaseType: "error", Status: status, Code: code, Message: msg}})
	return b
}

// Frame discards what the client sends: norman reads only to notice the close.
func (*subscription) Frame(*socket.Socket, []byte) error { return nil }

// keepAlive sends norman's ping frame every interval until the connection ends.
func keepAlive(s *socket.Socket, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.Done():
			return
		case <-t.C:
			if !s.Send(pingFrame) {
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
		sess, err = h.Runtime.Auth.Header(ctx, hdr)
		return sess, false, err
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		sess, err = h.Runtime.Auth.Token(ctx, c.Value)
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
func (e Encoder) Encode(m *hub.Message) ([]byte, error) {
	var ev event.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
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
	if m.Position != "" {
		// Herald's: the event's position in the stream, for ?since= after a reconnect.
		// Norman's clients read name and data only.
		b = append(b, `,"position":"`...)
		b = append(b, m.Position...)
		b = append(b, '"')
	}
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
