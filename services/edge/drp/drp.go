// Package drp speaks Digital Rebar Provision's event WebSocket (seeds 001/002,
// protocols.md §2) on GET /api/v3/ws: text commands "register type.action.key" and
// "deregister type.action.key", each answered by a {"Type":"websocket",...} frame that DRP's Go
// client blocks on, and events as models.Event JSON with all seven keys.
//
// Where DRP stays silent or crashes, Herald answers: a malformed pattern, an unknown verb or a
// pattern outside the caller's permissions gets a frame {"Type":"websocket","Action":"error",
// "Key":<pattern>,"Object":{"Error":...,"Code":...}}. Its Type is "websocket", so DRP's client
// counts it as the reply to its command and does not hang; the connection stays up.
package drp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/drpapi"
	"github.com/heraldhq/herald/services/edge/hub"
)

// Path is where DRP clients open the event socket.
const Path = "/api/v3/ws"

// Endpoint names DRP sockets in the connection registry.
const Endpoint = "drp"

// MaxRegistrations bounds the patterns one connection may hold.
const MaxRegistrations = 64

// Handler serves the DRP event socket.
type Handler struct {
	Hub      *hub.Hub
	Auth     *access.Authenticator
	Upgrader *wsconn.Upgrader
	Log      *slog.Logger
	Now      func() time.Time  // nil: time.Now
	Tracker  *registry.Tracker // records the connection fleet-wide; nil: not recorded
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// ServeHTTP authenticates, upgrades and hands the connection to its own goroutine, returning at
// once so net/http frees the request's buffers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sess, err := h.Auth.Request(r)
	if err != nil {
		drpapi.WriteAuthError(w, err)
		return
	}
	// No Origin check: DRP authenticates by header or query token, never by cookie, so a
	// foreign page cannot ride on a browser's ambient credentials.
	conn, err := h.Upgrader.Upgrade(w, r, h.Log)
	if err != nil {
		h.Log.Debug("drp: upgrade failed", "err", err)
		return
	}
	client, err := h.Hub.NewClient(conn, Encoder{})
	if err != nil {
		conn.Close(wsconn.DisconnectShutdown)
		go func() { _ = conn.ReadLoop(func([]byte) {}) }()
		return
	}
	s := &session{h: h, conn: conn, client: client, sess: sess, regs: map[string][]string{}, untrack: func() {}}
	if h.Tracker != nil {
		_, s.untrack = h.Tracker.Track(registry.Conn{RemoteAddr: r.RemoteAddr, Principal: sess.Principal(),
			Websocket: true, Endpoint: Endpoint}, func(reason string) { conn.Close(wsconn.DisconnectKicked.WithReason(reason)) })
	}
	go s.run()
}

// session is one DRP connection.
type session struct {
	h      *Handler
	conn   *wsconn.Conn
	client *hub.Client
	sess   access.Session
	regs   map[string][]string // pattern -> subjects, DRP's exact-string list; read loop only
	// untrack removes the connection from the registry (and announces connections.delete).
	untrack func()
}

func (s *session) run() {
	defer s.untrack()
	defer s.h.Hub.Remove(s.client)
	defer s.sess.Watch(s.h.now(), s.conn.Close)()
	err := s.conn.ReadLoop(s.handle)
	s.h.Log.Debug("drp: connection ended", "principal", s.sess.Principal(), "err", err)
}

// handle runs one text command. DRP trims the frame and splits it at the first space.
func (s *session) handle(msg []byte) {
	verb, arg, _ := bytes.Cut(bytes.TrimSpace(msg), []byte(" "))
	pattern := string(arg)
	switch string(verb) {
	case "register":
		s.register(pattern)
	case "deregister":
		s.deregister(pattern)
	default:
		s.fail(string(verb), truncate(string(msg), 128), http.StatusBadRequest,
			fmt.Sprintf("unknown command %q: send \"register type.action.key\" or \"deregister type.action.key\"", truncate(string(verb), 32)))
	}
}

func (s *session) register(pattern string) {
	if _, dup := s.regs[pattern]; dup {
		s.ack("register", pattern)
		return
	}
	if len(s.regs) >= MaxRegistrations {
		s.fail("register", pattern, http.StatusBadRequest, fmt.Sprintf("at most %d registrations per connection", MaxRegistrations))
		return
	}
	f, err := event.ParseFilter(pattern)
	if err != nil {
		s.fail("register", pattern, http.StatusBadRequest, err.Error())
		return
	}
	allowed := event.Allowed(f, s.sess.Filters)
	if len(allowed) == 0 {
		s.fail("register", pattern, http.StatusForbidden,
			fmt.Sprintf("register %s: outside your permissions", pattern))
		return
	}
	subjects, err := subject.ForFilters(allowed)
	if err != nil {
		s.fail("register", pattern, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.h.Hub.Subscribe(ctx, s.client, subjects); err != nil {
		s.h.Log.Warn("drp: subscribe failed", "pattern", pattern, "err", err)
		s.fail("register", pattern, http.StatusServiceUnavailable, "cannot subscribe now, try again")
		return
	}
	s.regs[pattern] = subjects
	s.ack("register", pattern)
}

// deregister removes the registration string-equal to pattern, as DRP does; a pattern never
// registered is acknowledged as a no-op.
func (s *session) deregister(pattern string) {
	if subjects, ok := s.regs[pattern]; ok {
		s.h.Hub.Unsubscribe(s.client, subjects)
		delete(s.regs, pattern)
	}
	s.ack("deregister", pattern)
}

func (s *session) ack(action, pattern string) {
	s.send(Frame{Time: s.h.now(), Type: "websocket", Action: action, Key: pattern})
}

func (s *session) fail(command, key string, code int, msg string) {
	obj, _ := json.Marshal(struct {
		Error   string
		Command string
		Code    int
	}{msg, command, code})
	s.send(Frame{Time: s.h.now(), Type: "websocket", Action: "error", Key: key, Object: obj})
}

func (s *session) send(f Frame) {
	b, err := json.Marshal(f)
	if err != nil {
		return
	}
	s.conn.Send(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Frame is DRP's models.Event as it goes on the wire: no json tags, so every key is always
// present, Object and Original null when empty.
type Frame struct {
	Time      time.Time
	Type      string
	Action    string
	Key       string
	Principal string
	Object    json.RawMessage
	Original  json.RawMessage
}

// MarshalJSON writes null for an absent Object or Original.
func (f Frame) MarshalJSON() ([]byte, error) {
	type plain Frame
	p := plain(f)
	if len(p.Object) == 0 {
		p.Object = json.RawMessage("null")
	}
	if len(p.Original) == 0 {
		p.Original = json.RawMessage("null")
	}
	return json.Marshal(p)
}

// Encoder renders events as DRP frames.
type Encoder struct{}

// Encode implements hub.Encoder: payload is an event as ingest publishes it.
func (Encoder) Encode(_ string, payload []byte) ([]byte, error) {
	var ev event.Event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("drp: decode event: %w", err)
	}
	return json.Marshal(Frame{Time: ev.Time, Type: ev.Type, Action: ev.Action, Key: ev.Key,
		Principal: ev.Principal, Object: ev.Object, Original: ev.Original})
}
