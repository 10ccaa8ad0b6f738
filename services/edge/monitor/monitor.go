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
//
// Resume (Herald's addition). Every sample, alert and log frame carries "position":
// "<epoch>:<seq>", its place in the telemetry stream (a field the ChatOps product's clients
// ignore; an agent's own "seq" stays inside "data"). A viewer that reconnects, to any edge,
// sends its last position in the auth message, {"type":"auth","token":...,"since":"<epoch>:<seq>"}:
// after auth_success it gets exactly the stored frames after that position for its server, in
// stream order, then {"type":"resumed","position":...,"replayed":n}, then live frames, with no
// gap and no duplicate at the seam. A position the stream no longer holds (older than its
// first entry, or from a stream since created anew) gets {"type":"error","code":410,...}
// instead and live frames follow; a position that does not parse gets code 400, then live.
// Without "since" a viewer gets what it always did, with positions.
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
	"github.com/heraldhq/herald/pkg/eventstream"
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

// frames renders a server's samples, alerts and log entries, live or replayed, as the
// viewer's frames: {"type":<metrics|alert|log>,"data":<payload>,"position":<position>}. The
// NATS payload is already the JSON object a browser gets as "data".
type frames struct{}

// frameTypes maps a telemetry kind onto its frame's type.
var frameTypes = map[string]string{subject.KindMetrics: "metrics", subject.KindAlerts: "alert", subject.KindLogs: "log"}

// Encode implements hub.Encoder.
func (frames) Encode(m *hub.Message) ([]byte, error) {
	typ, ok := frameTypes[subject.TelemetryKind(m.Subject)]
	if !ok {
		return nil, fmt.Errorf("monitor: %q is not a server's telemetry", m.Subject)
	}
	if !json.Valid(m.Data) {
		return nil, fmt.Errorf("monitor: %s payload is not JSON", typ)
	}
	return wrap(typ, m.Data, m.Position), nil
}

// wrap is one frame; position "" leaves the field out.
func wrap(typ string, payload []byte, position string) []byte {
	b := make([]byte, 0, len(payload)+len(typ)+len(position)+34)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","data":`...)
	b = append(b, payload...)
	if position != "" {
		b = append(b, `,"position":"`...)
		b = append(b, position...)
		b = append(b, '"')
	}
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
		Since string `json:"since"`
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
	case m.Type == "auth" && !v.authed:
		return v.authenticate(s, m.Token, m.Since)
	case m.Type == "auth":
		return v.refresh(s, m.Token)
	case !v.authed:
		return refuse(s, reasonAuthRequired)
	default:
		send(s, map[string]string{"type": "error", "message": fmt.Sprintf("Unknown message type %q", m.Type)})
	}
	return nil
}

// refresh takes a second auth message on an open socket as a new token (Herald's addition):
// the socket goes on under it instead of closing when the first expires. A bad token gets an
// error frame and changes nothing; one without permission for this server closes the socket.
func (v *viewer) refresh(s *socket.Socket, raw string) error {
	next, err := s.Refresh(raw)
	if err != nil {
		send(s, map[string]string{"type": "error", "message": "Invalid token: " + strings.TrimPrefix(err.Error(), access.ErrDenied.Error()+": ")})
		return nil
	}
	want := event.Event{Type: permissionAction[v.h.Kind], Action: "read", Key: v.serverID, Scope: event.ScopeGlobal}
	if !next.Permitted(&want) {
		return refuse(s, "Server not found or access denied")
	}
	send(s, map[string]string{"type": "auth_success", "server_id": v.serverID, "message": "Token refreshed"})
	return nil
}

func (v *viewer) authenticate(s *socket.Socket, raw, since string) error {
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
	if since != "" {
		s.Hold() // before subscribing: live frames wait for the replay
	}
	gate := &gate{Sink: s}
	client, err := s.ClientFor(gate, nil)
	if err != nil {
		return err
	}
	// The permission checked above is for this server only, and these are its subjects only:
	// a replay reads nothing else.
	subjects := map[Kind][]string{
		Metrics: {subject.Metrics(v.serverID), subject.Alerts(v.serverID)},
		Logs:    {subject.Logs(v.serverID)},
	}[v.h.Kind]
	if err := s.Subscribe(client, frames{}, subjects); err != nil {
		return err
	}
	// Subscribed: auth_success tells the client so, and goes before any live frame (the gate
	// holds them). The latest sample is read after subscribing, so none falls between the two.
	send(s, map[string]string{"type": "auth_success", "server_id": v.serverID, "message": "Authenticated successfully"})
	if since != "" {
		gate.open(nil, 0) // the socket holds from here
		v.resume(s, subjects, since)
		return nil
	}
	var latest []byte
	var seq uint64
	if v.h.Kind == Metrics {
		latest, seq = v.latest(ctx)
	}
	gate.open(latest, seq)
	return nil
}

// resume replays the server's stored frames after since, then says how it went.
func (v *viewer) resume(s *socket.Socket, subjects []string, since string) {
	err := s.ResumeStream(subject.TelemetryStream, frames{}, subjects, since, func(r socket.Resumed) {
		if r.TooOld {
			send(s, map[string]any{"type": "error", "code": 410, "message": "too old: " + r.From +
				" is no longer in the telemetry stream (expired, or from a stream created anew); live frames follow"})
			return
		}
		pos := r.To
		if pos == "" {
			pos = r.From // nothing missed: the client's position stands
		}
		send(s, map[string]any{"type": "resumed", "position": pos, "replayed": r.Replayed})
	})
	if err != nil {
		send(s, map[string]any{"type": "error", "code": 400, "message": err.Error() + "; live frames follow"})
		s.Release()
	}
}

// latest is the frame of the server's latest sample and its sequence: from the telemetry
// stream when it still holds one (so it has a position, and its live copy is dropped by
// sequence), else from the agent store (no position; 0). Nil when there is none.
func (v *viewer) latest(ctx context.Context) ([]byte, uint64) {
	if js := v.h.Runtime.JS; js != nil {
		if st, err := js.Stream(ctx, subject.TelemetryStream); err == nil {
			if m, err := st.GetLastMsgForSubject(ctx, subject.Metrics(v.serverID)); err == nil && json.Valid(m.Data) {
				pos := eventstream.FormatPosition(eventstream.EpochOf(st.CachedInfo()), m.Sequence)
				return wrap(frameTypes[subject.KindMetrics], m.Data, pos), m.Sequence
			}
		}
	}
	if v.h.Latest != nil {
		if sample, ok, err := v.h.Latest.LatestMetrics(ctx, v.serverID); err == nil && ok {
			return wrap(frameTypes[subject.KindMetrics], sample, ""), 0
		}
	}
	return nil, 0
}

// gate is a viewer's sink. Until open it holds live frames (at most maxHeld), so the
// auth_success frame and the latest sample go first. A latest sample from the telemetry stream
// has a sequence, and the socket drops its live copy by it. One from the agent store has none;
// ingest stores a sample there before it publishes it, so a viewer may get that sample both
// ways: the first live sample is dropped when its data is the latest one's.
type gate struct {
	hub.Sink
	mu     sync.Mutex
	opened bool        // guarded by mu
	held   []heldFrame // frames that came before open; guarded by mu
	latest []byte      // the latest sample sent without a sequence, until the first live one; guarded by mu
}

type heldFrame struct {
	frame []byte
	seq   uint64
}

// maxHeld bounds the frames held while a viewer is being set up.
const maxHeld = 256

var metricsPrefix = []byte(`{"type":"metrics",`)

// Deliver implements hub.Sink.
func (g *gate) Deliver(frame []byte, seq uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		if len(g.held) >= maxHeld {
			g.Sink.Close(wsconn.DisconnectSlow)
			return false
		}
		g.held = append(g.held, heldFrame{frame, seq})
		return true
	}
	return g.pass(frame, seq)
}

// pass sends a live frame, dropping the live copy of a latest sample sent without a
// sequence; mu must be held.
func (g *gate) pass(frame []byte, seq uint64) bool {
	if g.latest != nil && bytes.HasPrefix(frame, metricsPrefix) {
		dup := sameData(frame, g.latest)
		g.latest = nil
		if dup {
			return true
		}
	}
	return g.Sink.Deliver(frame, seq)
}

// sameData reports whether a live metrics frame carries the data of latest, a frame wrap made
// without a position: the live one is latest with a position added, or latest itself. The
// data is one whole JSON value, so a longer one cannot pass for it.
func sameData(live, latest []byte) bool {
	body := latest[:len(latest)-1] // without the closing brace
	rest, ok := bytes.CutPrefix(live, body)
	return ok && (bytes.Equal(rest, []byte("}")) || bytes.HasPrefix(rest, []byte(`,"position":`)))
}

// open sends latest (nil: none) with its sequence and the held frames, in stream order, and
// lets live frames through. Held frames stored before the latest sample (an alert, say: alerts
// and samples share the stream's sequence) go first: the socket drops any frame at or below the
// last sequence it sent, so after the latest they would be lost.
func (g *gate) open(latest []byte, seq uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rest := g.held
	if latest != nil {
		if seq > 0 {
			k := 0
			for k < len(rest) && rest[k].seq > 0 && rest[k].seq < seq {
				g.pass(rest[k].frame, rest[k].seq)
				k++
			}
			rest = rest[k:]
		}
		g.Sink.Deliver(latest, seq)
		if seq == 0 {
			g.latest = latest
		}
	}
	for _, f := range rest {
		g.pass(f.frame, f.seq)
	}
	g.held, g.opened = nil, true
}
