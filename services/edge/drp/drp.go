// Package drp speaks Digital Rebar Provision's event WebSocket, as DRP's own server and Go
// client put it on the wire, on GET /api/v3/ws: text commands "register type.action.key" and
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
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/services/edge/drpapi"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/socket"
)

// Path is where DRP clients open the event socket.
const Path = "/api/v3/ws"

// Endpoint names DRP sockets in the connection registry.
const Endpoint = "drp"

// MaxRegistrations bounds the patterns one connection may hold.
const MaxRegistrations = 64

// Handler serves the DRP event socket on the edge's socket runtime.
type Handler struct {
	Runtime *socket.Runtime
}

// ServeHTTP runs one DRP socket.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.Runtime.Serve(w, r, Endpoint, h)
}

// Accept reads DRP's credentials (header, or ?token=). No Origin check: DRP authenticates by
// header or query token, never by cookie, so a foreign page cannot ride on a browser's ambient
// credentials.
func (h *Handler) Accept(r *http.Request) (socket.Handler, *access.Session, error) {
	sess, err := h.Runtime.Auth.Request(r)
	if err != nil {
		return nil, nil, err
	}
	// A socket never hands its token back, and the token is a substring of the request line:
	// kept, it would keep the whole line (~400 bytes) for the connection's life.
	sess.Token = ""
	return &session{sess: sess, since: sinceOf(r)}, &sess, nil
}

// Refuse answers a failed authentication as DRP does (drpapi.WriteAuthError).
func (h *Handler) Refuse(w http.ResponseWriter, err error) { drpapi.WriteAuthError(w, err) }

// session is one DRP connection.
type session struct {
	sess   access.Session
	client *hub.Client

	mu      sync.Mutex     // regs and the resume state; the resume timer reads them too
	regs    []registration // DRP's exact-string list, in order; guarded by mu
	since   string         // the position to resume from ("" none); guarded by mu
	resumed bool           // the catch-up has started; guarded by mu
	timer   *time.Timer    // starts the catch-up after the first registrations; guarded by mu
}

// registration is one registered pattern and the subjects it subscribed. A connection has
// a few at most (MaxRegistrations), so a slice: a map costs ~400 bytes even with one entry,
// on every idle connection.
type registration struct {
	pattern  string
	subjects []string
}

// find is the index of pattern in regs, or -1; mu must be held.
func (c *session) find(pattern string) int {
	return slices.IndexFunc(c.regs, func(r registration) bool { return r.pattern == pattern })
}

// Open makes the connection's hub client; registrations come as commands. A socket that
// resumes holds live events until it has caught up (resume.go).
func (c *session) Open(s *socket.Socket) error {
	if c.since != "" {
		s.Hold()
	}
	client, err := s.Client(Encoder{})
	c.client = client
	return err
}

// Frame runs one text command. DRP trims the frame and splits it at the first space.
func (c *session) Frame(s *socket.Socket, msg []byte) error {
	verb, arg, _ := bytes.Cut(bytes.TrimSpace(msg), []byte(" "))
	pattern := string(arg)
	switch string(verb) {
	case "register":
		c.register(s, pattern)
	case "deregister":
		c.deregister(s, pattern)
	case "resume":
		c.resume(s, pattern)
	case "token":
		c.refresh(s, pattern)
	default:
		fail(s, string(verb), truncate(string(msg), 128), http.StatusBadRequest,
			fmt.Sprintf("unknown command %q: send \"register type.action.key\", \"deregister type.action.key\" or \"resume <position>\"", truncate(string(verb), 32)))
	}
	return nil
}

// refresh runs `token <jwt>`, Herald's addition: the connection goes on under a new token of
// the same user, so it need not reconnect when the old one expires. Registrations already made
// stay; new ones are checked against the new token's permissions.
func (c *session) refresh(s *socket.Socket, raw string) {
	next, err := s.Refresh(raw)
	if err != nil {
		fail(s, "token", "", http.StatusUnauthorized, err.Error())
		return
	}
	c.mu.Lock()
	c.sess = next
	c.mu.Unlock()
	obj := fmt.Appendf(nil, `{"ExpiresAt":%q}`, next.Claims.ExpiresAt.UTC().Format(time.RFC3339))
	send(s, Frame{Time: s.Now(), Type: "websocket", Action: "token", Object: obj})
}

func (c *session) register(s *socket.Socket, pattern string) {
	c.mu.Lock()
	dup := c.find(pattern) >= 0
	n := len(c.regs)
	c.mu.Unlock()
	if dup {
		ack(s, "register", pattern)
		return
	}
	if n >= MaxRegistrations {
		fail(s, "register", pattern, http.StatusBadRequest, fmt.Sprintf("at most %d registrations per connection", MaxRegistrations))
		return
	}
	f, err := event.ParseFilter(pattern)
	if err != nil {
		fail(s, "register", pattern, http.StatusBadRequest, err.Error())
		return
	}
	c.mu.Lock()
	perms := c.sess.Filters
	c.mu.Unlock()
	allowed := event.Allowed(f, perms)
	if len(allowed) == 0 {
		fail(s, "register", pattern, http.StatusForbidden,
			fmt.Sprintf("register %s: outside your permissions", pattern))
		return
	}
	subjects, err := subject.ForFilters(allowed)
	if err != nil {
		fail(s, "register", pattern, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.Subscribe(c.client, nil, subjects); err != nil {
		fail(s, "register", pattern, http.StatusServiceUnavailable, "cannot subscribe now, try again")
		return
	}
	c.mu.Lock()
	// Frames come one at a time, so the pattern is still new here.
	c.regs = append(c.regs, registration{pattern: pattern, subjects: subjects})
	c.mu.Unlock()
	ack(s, "register", pattern)
	c.registered(s)
}

// deregister removes the registration string-equal to pattern, as DRP does; a pattern never
// registered is acknowledged as a no-op.
func (c *session) deregister(s *socket.Socket, pattern string) {
	c.mu.Lock()
	var subjects []string
	i := c.find(pattern)
	ok := i >= 0
	if ok {
		subjects = c.regs[i].subjects
		c.regs = slices.Delete(c.regs, i, i+1)
	}
	c.mu.Unlock()
	if ok {
		s.Unsubscribe(c.client, subjects)
	}
	ack(s, "deregister", pattern)
}

func ack(s *socket.Socket, action, pattern string) {
	send(s, Frame{Time: s.Now(), Type: "websocket", Action: action, Key: pattern})
}

func fail(s *socket.Socket, command, key string, code int, msg string) {
	obj, _ := json.Marshal(struct {
		Error   string
		Command string
		Code    int
	}{msg, command, code})
	send(s, Frame{Time: s.Now(), Type: "websocket", Action: "error", Key: key, Object: obj})
}

func send(s *socket.Socket, f Frame) {
	b, err := json.Marshal(f)
	if err != nil {
		return
	}
	s.Send(b)
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
	// Position is Herald's: where the event sits in the event stream ("<epoch>:<seq>"), to
	// resume from after a reconnect (?since= or the resume command). DRP's clients ignore
	// keys they do not know; acknowledgements carry none.
	Position string `json:",omitempty"`
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

// Encode implements hub.Encoder: the message is an event as ingest stores it.
func (Encoder) Encode(m *hub.Message) ([]byte, error) {
	var ev event.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return nil, fmt.Errorf("drp: decode event: %w", err)
	}
	return json.Marshal(Frame{Time: ev.Time, Type: ev.Type, Action: ev.Action, Key: ev.Key,
		Principal: ev.Principal, Object: ev.Object, Original: ev.Original, Position: m.Position})
}
