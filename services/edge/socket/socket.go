// Package socket is the one WebSocket runtime of the edge: every dialect (DRP, Rancher, Salt,
// the metrics and logs viewers, and any new one) runs its connections through it. The runtime
// owns a connection's whole life, in this order:
//
//	Accept (the dialect reads the request: path, credentials, Origin) -> refused: HTTP error
//	upgrade -> track in the connection registry (kick closes 4003) -> watch the session
//	(expiry, revocation: 4001) -> Open -> read loop, each frame to Frame -> end: remove the hub
//	clients, stop the watch, untrack
//
// A dialect supplies only what differs: how it authenticates (Accept: a header, a path token,
// or nothing, when the first message carries the credentials and the handler calls
// Authenticate), how it encodes events (a hub.Encoder), and what it does on open and on an
// inbound frame. Closes are wsconn.Disconnect values, returned as errors or passed to Close.
//
// Handler methods run one at a time, never two at once (Open first, then each Frame on the
// goroutine that read it), so a handler's own state needs no lock. Goodbye is the exception
// (see Goodbyer).
package socket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
)

// Dialect is one WebSocket protocol on one or more paths.
type Dialect interface {
	// Accept decides on the HTTP request before the upgrade and returns the connection's
	// handler. Sess is the authenticated session when the credentials come with the request;
	// nil when they come in the first message (the handler then calls Socket.Authenticate).
	// An error is answered by Refuse and nothing is upgraded.
	Accept(r *http.Request) (h Handler, sess *access.Session, err error)
	// Refuse writes the dialect's HTTP answer to an error Accept returned.
	Refuse(w http.ResponseWriter, err error)
}

// Handler is one connection's half of a dialect.
type Handler interface {
	// Open runs once, after the upgrade and, for sessions known at Accept, after tracking.
	// An error closes the socket (see Socket.Close for how errors map to close codes).
	Open(s *Socket) error
	// Frame handles one inbound text or binary frame. An error closes the socket.
	Frame(s *Socket, msg []byte) error
}

// Goodbyer is implemented by handlers that must say something before the runtime closes the
// socket on its own account (the session expired or was revoked, authentication did not come
// in time): it may send a last frame and returns the close to use instead of d. It may run on
// any goroutine, concurrently with Frame, so it must only send.
type Goodbyer interface {
	Goodbye(s *Socket, d wsconn.Disconnect) wsconn.Disconnect
}

// DisconnectAuthTimeout closes a socket whose credentials did not come within
// Runtime.AuthTimeout (first-message dialects).
var DisconnectAuthTimeout = wsconn.DisconnectPolicy.WithReason("authentication required")

// DefaultAuthTimeout is how long a first-message dialect waits for its credentials.
const DefaultAuthTimeout = 10 * time.Second

// SubscribeTimeout bounds one Subscribe: NATS confirming the interest.
const SubscribeTimeout = 10 * time.Second

// Runtime is what every dialect of one edge shares. Its zero Now and AuthTimeout mean their
// defaults; Tracker may be nil (connections are then not listed fleet-wide).
type Runtime struct {
	Hub         *hub.Hub
	Auth        *access.Authenticator
	Upgrader    *wsconn.Upgrader
	Tracker     *registry.Tracker
	Log         *slog.Logger
	Now         func() time.Time // nil: time.Now
	AuthTimeout time.Duration    // 0: DefaultAuthTimeout

	// JS reads the event stream for resumes; nil: positions are refused as unavailable.
	JS            jetstream.JetStream
	MaxReplay     int           // events one resume may replay (0: DefaultMaxReplay); further behind is "too old"
	ReplayTimeout time.Duration // bound on one replay (0: DefaultReplayTimeout)

	// endpointLogs holds one logger per endpoint: With copies the handler's state (a few
	// hundred bytes), too much to repeat for every one of 10k idle connections.
	endpointLogs sync.Map // endpoint -> *slog.Logger
}

// now is the runtime's clock.
func (rt *Runtime) now() time.Time {
	if rt.Now != nil {
		return rt.Now()
	}
	return time.Now()
}

func (rt *Runtime) log() *slog.Logger {
	if rt.Log != nil {
		return rt.Log
	}
	return slog.New(slog.DiscardHandler)
}

// endpointLog is the logger of the connections on endpoint.
func (rt *Runtime) endpointLog(endpoint string) *slog.Logger {
	if l, ok := rt.endpointLogs.Load(endpoint); ok {
		return l.(*slog.Logger)
	}
	l, _ := rt.endpointLogs.LoadOrStore(endpoint, rt.log().With("endpoint", endpoint))
	return l.(*slog.Logger)
}

// Serve runs one HTTP request of dialect d: Accept, upgrade,
// and the connection on its own goroutine. Endpoint names the connection in the registry
// (registry.Conn.Endpoint) and in logs. Serve returns once the connection is handed off, so
// net/http frees the request's buffers.
func (rt *Runtime) Serve(w http.ResponseWriter, r *http.Request, endpoint string, d Dialect) {
	h, sess, err := d.Accept(r)
	if err != nil {
		d.Refuse(w, err)
		return
	}
	log := rt.endpointLog(endpoint)
	conn, err := rt.Upgrader.Upgrade(w, r, log)
	if err != nil {
		log.Debug("socket: upgrade failed", "err", err) // gorilla has answered the request
		return
	}
	s := &Socket{rt: rt, conn: conn, h: h, endpoint: endpoint, remote: r.RemoteAddr, log: log,
		untrack: func() {}, unwatch: func() {}, counted: metrics.EdgeSocketOpened(endpoint)}
	if sess != nil {
		s.authenticated(*sess, "")
	} else {
		timeout := rt.AuthTimeout
		if timeout <= 0 {
			timeout = DefaultAuthTimeout
		}
		s.deadline = time.AfterFunc(timeout, func() { s.end(DisconnectAuthTimeout) })
	}
	go s.run()
}

// Socket is one live connection as a dialect sees it.
type Socket struct {
	rt       *Runtime
	conn     *wsconn.Conn
	h        Handler
	endpoint string
	remote   string
	log      *slog.Logger
	deadline *time.Timer    // first-message dialects: ends the socket if no credentials come
	counted  func(code int) // counts the socket closed, per endpoint and close code

	mu      sync.Mutex
	sess    *access.Session // nil until authenticated; guarded by mu
	connID  string          // the registry's id for this connection ("" untracked); guarded by mu
	untrack func()          // guarded by mu
	unwatch func()          // guarded by mu
	clients []*hub.Client   // Open, Frame and finish only (never two at once)

	// Resume state (resume.go): the last stream sequence sent, and the live frames held
	// while the socket catches up.
	lastSeq atomic.Uint64
	holding atomic.Bool
	heldMu  sync.Mutex
	held    []heldFrame // guarded by heldMu
}

func (s *Socket) run() {
	if err := s.h.Open(s); err != nil {
		s.Close(closeFor(err))
	}
	s.conn.Start(s.frame, s.finish)
}

// frame hands one inbound frame to the handler.
func (s *Socket) frame(msg []byte) {
	if err := s.h.Frame(s, msg); err != nil {
		s.Close(closeFor(err))
	}
}

// finish cleans up once the connection has ended; err is why.
func (s *Socket) finish(err error) {
	if s.deadline != nil {
		s.deadline.Stop()
	}
	s.counted(s.conn.ClosedWith(err))
	// Clients are made only by Open and Frame, which are done by now, so none can race this
	// removal.
	for _, c := range s.clients {
		s.rt.Hub.Remove(c)
	}
	s.mu.Lock()
	unwatch, untrack, sess := s.unwatch, s.untrack, s.sess
	s.mu.Unlock()
	unwatch()
	untrack()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		principal := ""
		if sess != nil {
			principal = sess.Principal()
		}
		s.log.Debug("socket: connection ended", "principal", principal, "remote", s.remote, "err", err)
	}
}

// closeFor maps a handler's error to the close it causes: a Disconnect as it is, the hub's
// ErrClosed as a shutdown, anything else as an internal error whose text stays in the log.
func closeFor(err error) wsconn.Disconnect {
	var d wsconn.Disconnect
	switch {
	case errors.As(err, &d):
		return d
	case errors.Is(err, hub.ErrClosed):
		return wsconn.DisconnectShutdown
	default:
		return wsconn.DisconnectInternal
	}
}

// Authenticate records the session of a first-message dialect: it stops the credentials
// deadline, tracks the connection (serverID is the registry's ServerID, "" for none) and starts
// watching the session. It reports false when the deadline already ended the socket.
func (s *Socket) Authenticate(sess access.Session, serverID string) bool {
	if s.deadline != nil && !s.deadline.Stop() {
		return false
	}
	s.authenticated(sess, serverID)
	return true
}

func (s *Socket) authenticated(sess access.Session, serverID string) {
	var untrack func()
	var self registry.Conn
	if s.rt.Tracker != nil {
		self, untrack = s.rt.Tracker.Track(registry.Conn{RemoteAddr: s.remote, Principal: sess.Principal(),
			Websocket: true, Endpoint: s.endpoint, ServerID: serverID},
			func(reason string) { s.Close(wsconn.DisconnectKicked.WithReason(reason)) })
	}
	unwatch := sess.Watch(s.rt.now(), s.end)
	s.conn.SetPrincipal(sess.Principal()) // a slow consumer's warning names who it was
	s.mu.Lock()
	s.sess = &sess
	s.connID = self.ID
	if untrack != nil {
		s.untrack = untrack
	}
	s.unwatch = unwatch
	s.mu.Unlock()
}

// Refresh replaces the session with the one the new token raw opens, for a long-lived socket
// whose client sends a fresh token in-band (DRP's `token <jwt>`, a viewer's second auth
// message) rather than reconnecting when the old one expires. The token must name the same
// principal; on any error the old session stays. The watch (expiry, revocation) follows the
// new session from here on.
func (s *Socket) Refresh(raw string) (access.Session, error) {
	cur, ok := s.Session()
	if !ok {
		return access.Session{}, fmt.Errorf("%w: not authenticated yet", access.ErrDenied)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next, err := cur.Refresh(ctx, raw)
	if err != nil {
		return access.Session{}, err
	}
	unwatch := next.Watch(s.rt.now(), s.end)
	s.mu.Lock()
	old := s.unwatch
	s.sess, s.unwatch = &next, unwatch
	s.mu.Unlock()
	old()
	return next, nil
}

// end closes the socket on the runtime's own account, letting the handler say goodbye.
func (s *Socket) end(d wsconn.Disconnect) {
	if g, ok := s.h.(Goodbyer); ok {
		d = g.Goodbye(s, d)
	}
	s.Close(d)
}

// Session is the authenticated session; ok is false before a first-message dialect has
// authenticated.
func (s *Socket) Session() (sess access.Session, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return access.Session{}, false
	}
	return *s.sess, true
}

// ConnID is the connection's id in the connection registry ("" when it is not tracked, or
// not yet authenticated), so a dialect can leave out the event about the socket itself.
func (s *Socket) ConnID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connID
}

// Client returns a new hub client whose frames go to this socket through enc (nil: only
// SubscribeWith is used). The runtime removes it when the socket ends. Open and Frame only.
func (s *Socket) Client(enc hub.Encoder) (*hub.Client, error) {
	return s.ClientFor(s, enc)
}

// ClientFor is Client with another sink, for a dialect that processes events itself before
// writing (Salt's formatted_events). The sink must close this socket when it gives up.
func (s *Socket) ClientFor(sink hub.Sink, enc hub.Encoder) (*hub.Client, error) {
	c, err := s.rt.Hub.NewClient(sink, enc)
	if err != nil {
		return nil, err
	}
	s.clients = append(s.clients, c)
	return c, nil
}

// Subscribe adds subjects to c through enc (nil: c's own encoder) and returns once NATS has
// the interest. A failure is logged and returned as the close that says so: a shutdown, or
// 1011 "cannot subscribe now, try again".
func (s *Socket) Subscribe(c *hub.Client, enc hub.Encoder, subjects []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), SubscribeTimeout)
	defer cancel()
	var err error
	if enc == nil {
		err = s.rt.Hub.Subscribe(ctx, c, subjects)
	} else {
		err = s.rt.Hub.SubscribeWith(ctx, c, enc, subjects)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hub.ErrClosed):
		return wsconn.DisconnectShutdown
	default:
		s.log.Warn("socket: subscribe failed", "subjects", len(subjects), "err", err)
		return wsconn.DisconnectInternal.WithReason("cannot subscribe now, try again")
	}
}

// Unsubscribe removes subjects that Subscribe added to c.
func (s *Socket) Unsubscribe(c *hub.Client, subjects []string) { s.rt.Hub.Unsubscribe(c, subjects) }

// LastSeq is the stream sequence of the last event sent to the socket (0: none yet).
func (s *Socket) LastSeq() uint64 { return s.lastSeq.Load() }

// Send queues a frame without blocking; false means the socket is closed.
func (s *Socket) Send(frame []byte) bool { return s.conn.Send(frame) }

// Close sends the close frame d after what is already queued; only the first close counts.
func (s *Socket) Close(d wsconn.Disconnect) { s.conn.Close(d) }

// Done is closed when the connection has ended.
func (s *Socket) Done() <-chan struct{} { return s.conn.Done() }

// Now is the runtime's clock, for frame timestamps.
func (s *Socket) Now() time.Time { return s.rt.now() }

// Log is the connection's logger.
func (s *Socket) Log() *slog.Logger { return s.log }
