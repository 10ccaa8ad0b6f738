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
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
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

// Handler serves one kind of socket.
type Handler struct {
	Kind        Kind
	Hub         *hub.Hub
	Auth        *access.Authenticator
	Upgrader    *wsconn.Upgrader
	Latest      Latest        // nil: no sample on connect
	AuthTimeout time.Duration // wait for the auth message (0: 10s)
	Log         *slog.Logger
	Tracker     *registry.Tracker // records authenticated sockets fleet-wide; nil: not recorded
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

// ServeHTTP upgrades at once (the credentials come in the first message) and hands the socket to
// its own goroutine.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serverID := r.PathValue("server_id")
	// No Origin check: the token comes in a message, never from a cookie, so a foreign page
	// gains nothing from a browser's ambient credentials.
	conn, err := h.Upgrader.Upgrade(w, r, h.Log)
	if err != nil {
		h.Log.Debug("monitor: upgrade failed", "err", err)
		return
	}
	s := &socket{h: h, conn: conn, serverID: serverID, remote: r.RemoteAddr, authed: make(chan struct{}), untrack: func() {}}
	go s.run()
}

type socket struct {
	h        *Handler
	conn     *wsconn.Conn
	serverID string
	remote   string

	once       sync.Once
	deadline   *time.Timer   // refuses a socket that has not authenticated in time
	authed     chan struct{} // closed after a successful auth message
	client     *hub.Client   // set before authed closes
	stopExpiry func()        // set before authed closes
	untrack    func()        // set before authed closes
}

func (s *socket) run() {
	timeout := s.h.AuthTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	s.deadline = time.AfterFunc(timeout, func() {
		s.refuse("Authentication required: send {'type': 'auth', 'token': '...'} as first message")
	})
	err := s.conn.ReadLoop(s.handle)
	s.deadline.Stop()
	select {
	case <-s.authed:
		s.stopExpiry()
		s.h.Hub.Remove(s.client)
		s.untrack()
	default:
	}
	s.h.Log.Debug("monitor: connection ended", "server_id", s.serverID, "err", err)
}

// refuse sends the seed's error frame and closes 1008 with the same reason.
func (s *socket) refuse(reason string) {
	s.send(map[string]string{"type": "error", "message": reason})
	s.conn.Close(wsconn.DisconnectPolicy.WithReason(reason))
}

func (s *socket) send(v any) {
	b, err := json.Marshal(v)
	if err == nil {
		s.conn.Send(b)
	}
}

var permissionAction = map[Kind]string{Metrics: "metrics", Logs: "logs"}

func (s *socket) handle(msg []byte) {
	var m struct {
		Type  string `json:"type"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal(msg, &m); err != nil || m.Type == "" {
		select {
		case <-s.authed:
			s.send(map[string]string{"type": "error", "message": "Invalid message format"})
		default:
			s.refuse("Authentication required: send {'type': 'auth', 'token': '...'} as first message")
		}
		return
	}
	switch {
	case m.Type == "ping":
		s.send(map[string]string{"type": "pong"})
	case m.Type == "auth":
		s.once.Do(func() { s.authenticate(m.Token) })
	default:
		select {
		case <-s.authed:
			s.send(map[string]string{"type": "error", "message": fmt.Sprintf("Unknown message type %q", m.Type)})
		default:
			s.refuse("Authentication required: send {'type': 'auth', 'token': '...'} as first message")
		}
	}
}

func (s *socket) authenticate(raw string) {
	if !s.deadline.Stop() {
		return // refused for taking too long
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := s.h.Auth.Token(ctx, raw)
	if err != nil {
		s.refuse("Invalid token: " + strings.TrimPrefix(err.Error(), access.ErrDenied.Error()+": "))
		return
	}
	want := event.Event{Type: permissionAction[s.h.Kind], Action: "read", Key: s.serverID, Scope: event.ScopeGlobal}
	if s.serverID == "" || !sess.Permitted(&want) {
		s.refuse("Server not found or access denied")
		return
	}
	client, err := s.h.Hub.NewClient(s.conn, nil)
	if err != nil {
		s.conn.Close(wsconn.DisconnectShutdown)
		return
	}
	// auth_success goes first: once subscribed, live frames may be queued at any moment.
	s.send(map[string]string{"type": "auth_success", "server_id": s.serverID, "message": "Authenticated successfully"})
	streams := map[Kind][]stream{
		Metrics: {{subject.Metrics(s.serverID), metricsFrame}, {subject.Alerts(s.serverID), alertFrame}},
		Logs:    {{subject.Logs(s.serverID), logFrame}},
	}[s.h.Kind]
	for _, st := range streams {
		if err := s.h.Hub.SubscribeWith(ctx, client, st.enc, []string{st.subject}); err != nil {
			s.h.Hub.Remove(client)
			s.h.Log.Warn("monitor: subscribe failed", "server_id", s.serverID, "err", err)
			s.conn.Close(wsconn.DisconnectInternal.WithReason("cannot subscribe now, try again"))
			return
		}
	}
	s.client = client
	s.stopExpiry = sess.Watch(time.Now(), func(wsconn.Disconnect) { s.refuse("Token expired") })
	if s.h.Tracker != nil {
		_, s.untrack = s.h.Tracker.Track(registry.Conn{RemoteAddr: s.remote, Principal: sess.Principal(),
			Websocket: true, Endpoint: permissionAction[s.h.Kind], ServerID: s.serverID},
			func(reason string) { s.conn.Close(wsconn.DisconnectKicked.WithReason(reason)) })
	}
	close(s.authed)
	if s.h.Kind == Metrics && s.h.Latest != nil {
		if sample, ok, err := s.h.Latest.LatestMetrics(ctx, s.serverID); err == nil && ok {
			s.conn.Send(metricsFrame.wrap(sample))
		}
	}
}

type stream struct {
	subject string
	enc     hub.Encoder
}
