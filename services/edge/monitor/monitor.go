// Package monitor serves the browser side of the server-monitoring API (the agent/metrics API of
// the ChatOps product; see the README): /api/v1/ws/metrics/{server_id} and /api/v1/ws/logs/{server_id}.
//
// The token comes in the first message, {"type":"auth","token":<jwt>}, within a deadline. A bad
// token, or one without permission for that server (metrics.read.<id> or logs.read.<id>),
// gets {"type":"error","message":...} and a close 1008 with the same reason. On success the
// socket gets {"type":"auth_success",...}, then, on the metrics socket, the latest sample at once
// (so a new viewer does not wait for the next one) and every sample and alert as they come; the
// logs socket carries log entries only (unlike the ChatOps product, whose logs sockets
// received metrics too). {"type":"ping"} is answered with {"type":"pong"}. The socket closes
// with 1008 "token expired" when the token does.
package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/socket"
)

// Paths the handlers serve, for http.ServeMux patterns.
const (
	MetricsPath = "/api/v1/ws/metrics/{server_id}"
	LogsPath    = "/api/v1/ws/logs/{server_id}"
)

// Latest gives a new metrics viewer the last sample; agentstate.Store provides it.
type Latest interface {
	LatestMetrics(ctx context.Context, serverID string) (json.RawMessage, bool, error)
}

// Kind is which stream a socket carries.
type Kind int

// The two socket kinds.
const (
	Metrics Kind = iota
	Logs
)

// Handler serves one kind of socket on the edge's socket runtime; the credentials deadline is
// the Runtime's AuthTimeout.
type Handler struct {
	Kind    Kind
	Runtime *socket.Runtime
	Latest  Latest // nil: no sample on connect
}

// Frame encoders: the NATS payload is already the JSON object a browser gets as "data".
var (
	metricsFrame = envelope{"metrics"}
	alertFrame   = envelope{"alert"}
	logFrame     = envelope{"log"}
)

// envelope wraps a payload as {"type":<typ>,"data":<payload>}.
type envelope struct{ typ string }

// Encode implements hub.Encoder.
func (e envelope) Encode(m *hub.Message) ([]byte, error) {
	if !json.Valid(m.Data) {
		return nil, fmt.Errorf("monitor: %s payload is not JSON", e.typ)
	}
	return e.wrap(m.Data), nil
}

func (e envelope) wrap(payload []byte) []byte {
	b := make([]byte, 0, len(payload)+len(e.typ)+20)
	b = append(b, `{"type":"`...)
	b = append(b, e.typ...)
	b = append(b, `","data":`...)
	b = append(b, payload...)
	return append(b, '}')
}

// ServeHTTP runs one viewer socket.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.Runtime.Serve(w, r, permissionAction[h.Kind], h)
}

// Accept upgrades every request: the credentials come in the first message. No Origin check:
// the token comes in a message, never from a cookie, so a foreign page gains nothing from a
// browser's ambient credentials.
func (h *Handler) Accept(r *http.Request) (socket.Handler, *access.Session, error) {
	return &viewer{h: h, serverID: r.PathValue("server_id")}, nil, nil
}

// Refuse is never called: Accept refuses nothing.
func (h *Handler) Refuse(w http.ResponseWriter, _ error) {
	http.Error(w, "refused", http.StatusBadRequest)
}

// reasonAuthRequired is the ChatOps product's text for a socket that did not authenticate first.
const reasonAuthRequired = "Authentication required: send {'type': 'auth', 'token': '...'} as first message"

// viewer is one socket.
type viewer struct {
	h        *Handler
	serverID string
	authed   bool
}

// Open sends nothing: the client speaks first.
func (*viewer) Open(*socket.Socket) error { return nil }

// Goodbye turns the runtime's own closes into the ChatOps product's: an error frame, then 1008 with the
// same reason.
func (v *viewer) Goodbye(s *socket.Socket, d wsconn.Disconnect) wsconn.Disconnect {
	switch d.Code {
	case socket.DisconnectAuthTimeout.Code:
		return refuse(s, reasonAuthRequired)
	case wsconn.DisconnectTokenExpired.Code:
		return refuse(s, "Token expired")
	}
	return d
}

// refuse sends the ChatOps error frame and returns the 1008 close with the same reason.
func refuse(s *socket.Socket, reason string) wsconn.Disconnect {
	send(s, map[string]string{"type": "error", "message": reason})
	return wsconn.DisconnectPolicy.WithReason(reason)
}

func send(s *socket.Socket, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		s.Send(b)
	}
}

var permissionAction = map[Kind]string{Metrics: "metrics", Logs: "logs"}

// Frame handles auth, ping and anything else, as the ChatOps product does.
func (v *viewer) Frame(s *socket.Socket, msg []byte) error {
	var m struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal(msg, &m); err != nil || m.Type == "" {
		if !v.authed {
			return refuse(s, reasonAuthRequired)
		}
		send(s, map[string]string{"type": "error", "message": "Invalid message format"})
		return nil
	}
	switch {
	case m.Type == "ping":
		send(s, map[string]string{"type": "pong"})
	case m.Type == "auth":
		if !v.authed {
			return v.authenticate(s, m.Token)
		}
	case !v.authed:
		return refuse(s, reasonAuthRequired)
	default:
		send(s, map[string]string{"type": "error", "message": fmt.Sprintf("Unknown message type %q", m.Type)})
	}
	return nil
}

func (v *viewer) authenticate(s *socket.Socket, raw string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := v.h.Runtime.Auth.Token(ctx, raw)
	if err != nil {
		return refuse(s, "Invalid token: "+strings.TrimPrefix(err.Error(), access.ErrDenied.Error()+": "))
	}
	want := event.Event{Type: permissionAction[v.h.Kind], Action: "read", Key: v.serverID, Scope: event.ScopeGlobal}
	if v.serverID == "" || !sess.Permitted(&want) {
		return refuse(s, "Server not found or access denied")
	}
	if !s.Authenticate(sess, v.serverID) {
		return nil // refused for taking too long
	}
	v.authed = true
	gate := &gate{Sink: s}
	client, err := s.ClientFor(gate, nil)
	if err != nil {
		return err
	}
	streams := map[Kind][]stream{
		Metrics: {{subject.Metrics(v.serverID), metricsFrame}, {subject.Alerts(v.serverID), alertFrame}},
		Logs:    {{subject.Logs(v.serverID), logFrame}},
	}[v.h.Kind]
	for _, st := range streams {
		if err := s.Subscribe(client, st.enc, []string{st.subject}); err != nil {
			return err
		}
	}
	// Subscribed: auth_success tells the client so, and goes before any live frame (the gate
	// holds them). The latest sample is read after subscribing, so none falls between the two.
	send(s, map[string]string{"type": "auth_success", "server_id": v.serverID, "message": "Authenticated successfully"})
	var latest []byte
	if v.h.Kind == Metrics && v.h.Latest != nil {
		if sample, ok, err := v.h.Latest.LatestMetrics(ctx, v.serverID); err == nil && ok {
			latest = metricsFrame.wrap(sample)
		}
	}
	gate.open(latest)
	return nil
}

// gate is a viewer's sink. Until open it holds live frames (at most maxHeld), so the
// auth_success frame and the latest sample go first. Ingest stores a sample as the latest
// before it publishes it, so a viewer may get that sample both ways: the first live sample is
// dropped when it is the latest already sent (samples are the same bytes both ways).
type gate struct {
	hub.Sink
	mu     sync.Mutex
	opened bool     // guarded by mu
	held   [][]byte // frames that came before open; guarded by mu
	latest []byte   // the latest sample sent, until the first live one; guarded by mu
}

// maxHeld bounds the frames held while a viewer is being set up.
const maxHeld = 256

var metricsPrefix = metricsFrame.wrap(nil)[:len(`{"type":"metrics",`)]

// Deliver implements hub.Sink.
func (g *gate) Deliver(frame []byte, seq uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		if len(g.held) >= maxHeld {
			g.Sink.Close(wsconn.DisconnectSlow)
			return false
		}
		g.held = append(g.held, frame)
		return true
	}
	return g.pass(frame)
}

// pass sends a live frame, dropping the live copy of the latest sample; mu must be held.
func (g *gate) pass(frame []byte) bool {
	if g.latest != nil && bytes.HasPrefix(frame, metricsPrefix) {
		dup := bytes.Equal(frame, g.latest)
		g.latest = nil
		if dup {
			return true
		}
	}
	return g.Sink.Deliver(frame, 0)
}

// open sends latest (nil: none), then the held frames, and lets live frames through.
func (g *gate) open(latest []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if latest != nil {
		g.Sink.Deliver(latest, 0)
		g.latest = latest
	}
	for _, f := range g.held {
		g.pass(f)
	}
	g.held, g.opened = nil, true
}

type stream struct {
	subject string
	enc     hub.Encoder
}
