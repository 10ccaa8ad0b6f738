// Package monitor serves the browser side of the server-monitoring API (seed 004,
// protocols.md §4): /api/v1/ws/metrics/{server_id} and /api/v1/ws/logs/{server_id}.
//
// The token comes in the first message, {"type":"auth","token":<jwt>}, within a deadline. A bad
// token, or one without permission for that server (metrics.read.<id> or logs.read.<id>),
// gets {"type":"error","message":...} and a close 1008 with the same reason. On success the
// socket gets {"type":"auth_success",...}, then, on the metrics socket, the latest sample at once
// (so a new viewer does not wait for the next one) and every sample and alert as they come; the
// logs socket carries log entries only (unlike the product behind the seed, whose logs sockets
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
func (e envelope) Encode(_ string, payload []byte) ([]byte, error) {
	if !json.Valid(payload) {
		return nil, fmt.Errorf("monitor: %s payload is not JSON", e.typ)
	}
	return e.wrap(payload), nil
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

// reasonAuthRequired is the seed product's text for a socket that did not authenticate first.
const reasonAuthRequired = "Authentication required: send {'type': 'auth', 'token': '...'} as first message"

// viewer is one socket.
type viewer struct {
	h        *Handler
	serverID string
	authed   bool
}

// Open sends nothing: the client speaks first.
func (*viewer) Open(*socket.Socket) error { return nil }

// Goodbye turns the runtime's own closes into the seed's: an error frame, then 1008 with the
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

// refuse sends the seed's error frame and returns the 1008 close with the same reason.
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

// Frame handles auth, ping and anything else, as the seed's product does.
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
	gate := &latestGate{Sink: s}
	client, err := s.ClientFor(gate, nil)
	if err != nil {
		return err
	}
	// auth_success goes first: once subscribed, live frames may be queued at any moment.
	send(s, map[string]string{"type": "auth_success", "server_id": v.serverID, "message": "Authenticated successfully"})
	streams := map[Kind][]stream{
		Metrics: {{subject.Metrics(v.serverID), metricsFrame}, {subject.Alerts(v.serverID), alertFrame}},
		Logs:    {{subject.Logs(v.serverID), logFrame}},
	}[v.h.Kind]
	for _, st := range streams {
		if err := s.Subscribe(client, st.enc, []string{st.subject}); err != nil {
			return err
		}
	}
	// The latest sample after subscribing, so none falls between the two; the gate drops its
	// live copy.
	if v.h.Kind == Metrics && v.h.Latest != nil {
		if sample, ok, err := v.h.Latest.LatestMetrics(ctx, v.serverID); err == nil && ok {
			gate.sendLatest(metricsFrame.wrap(sample))
		}
	}
	return nil
}

// latestGate is a new metrics viewer's sink until its first live sample. Ingest stores a sample
// as the latest before it publishes it, so a viewer that subscribed and then read the latest
// may get that sample both ways: the gate sends the latest only if no live sample came first,
// and drops the live copy of a latest it sent. Samples are the same bytes both ways.
type latestGate struct {
	hub.Sink
	mu     sync.Mutex
	latest []byte // the latest frame sent, until a live sample arrives; guarded by mu
	live   bool   // a live sample passed; guarded by mu
}

var metricsPrefix = metricsFrame.wrap(nil)[:len(`{"type":"metrics",`)]

// Send implements hub.Sink.
func (g *latestGate) Send(frame []byte) bool {
	if !bytes.HasPrefix(frame, metricsPrefix) {
		return g.Sink.Send(frame) // alerts pass as they are
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	dup := g.latest != nil && bytes.Equal(frame, g.latest)
	g.latest, g.live = nil, true
	if dup {
		return true
	}
	return g.Sink.Send(frame)
}

func (g *latestGate) sendLatest(frame []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.live {
		g.latest = frame
		g.Sink.Send(frame)
	}
}

type stream struct {
	subject string
	enc     hub.Encoder
}
