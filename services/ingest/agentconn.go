package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/wsconn"
)

// Close reasons (and error frame texts where the agent protocol gives none).
const (
	reasonAuthRequired = "Authentication required: send {'type': 'auth', 'api_key': '...'} as first message"
	reasonAuthDown     = "Authentication unavailable, try again later"
	reasonReplaced     = "replaced by a newer connection for this server"
	reasonShutdown     = "server shutting down"
)

// Bounds of one agent connection.
const (
	maxInFlight  = 64              // RPC requests waiting for one agent's answers
	stateTimeout = 5 * time.Second // one agentstate call
	// agentGrace is what the holding ingest waits beyond the command timeout: an agent that
	// enforces timeout_ms itself answers right at the timeout, with the partial output, and
	// that answer should win over our own "timeout".
	agentGrace = time.Second
	// rpcMargin is what a requester waits beyond the command timeout; more than agentGrace,
	// so the holder's timeout reply arrives before the requester gives up.
	rpcMargin = 2 * time.Second
)

// EndpointAgent names agent sockets in the connection registry.
const EndpointAgent = "agent"

// agentConn is one agent WebSocket. Its parts, each in a file of its own:
//
//   - the reads (wsconn's Start, this file; one frame at a time) own the auth state and
//     dispatch frames; they never wait on storage;
//   - the auth and takeover state machine (agentauth.go) runs on it once, for the first frame;
//   - telemetry (metrics, logs, facts, alerts; telemetry.go) goes to the connection's bounded
//     worker, which does the Redis writes;
//   - commands (agentcmd.go) arrive on NATS goroutines and are correlated with the agent's
//     answers by pendingCalls.
//
// NATS callbacks touch only conn (safe for concurrent use), shape and the atomics.
type agentConn struct {
	svc    *Service
	conn   *wsconn.Conn
	id     string
	remote string
	log    *slog.Logger

	// Read goroutine only, except where noted.
	deadline   *time.Timer // refuses a connection that does not authenticate in time
	authed     bool
	closing    bool // a refusal is on its way: ignore what follows
	info       APIKeyInfo
	acceptedAt time.Time // set before the subscriptions exist; read by NATS callbacks
	shape      atomic.Int32
	shapeFixed bool
	subs       []*nats.Subscription
	takeover   takeoverState // guarded by its own mutex: NATS callbacks use it
	telemetry  *telemetry    // set at auth
	untrack    func()        // removes the connection from the registry; set at auth

	replaced atomic.Bool // closed by a takeover: no offline event
	pending  *pendingCalls
}

// serveAgent upgrades GET /api/v1/agents/ws and hands the socket to its own goroutine; the
// API key comes in the first message.
func (s *Service) serveAgent(w http.ResponseWriter, r *http.Request) {
	if !s.agents.begin() {
		http.Error(w, reasonShutdown, http.StatusServiceUnavailable)
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, s.log)
	if err != nil {
		s.agents.end(nil)
		s.log.Debug("agent upgrade failed", "err", err)
		return
	}
	c := &agentConn{
		svc:     s,
		conn:    conn,
		id:      randomID(8),
		remote:  conn.RemoteAddr(),
		pending: newPendingCalls(maxInFlight, &s.agents.rpcs),
	}
	c.log = s.log.With("conn", c.id, "remote", c.remote)
	c.shape.Store(int32(agentwire.ShapeDoc))
	go c.run()
}

func (c *agentConn) run() {
	c.deadline = time.AfterFunc(c.svc.cfg.AgentAuthTimeout, func() {
		c.refuse(reasonAuthRequired, wsconn.DisconnectPolicy.WithReason(reasonAuthRequired))
	})
	c.svc.agents.track(c)
	c.conn.Start(c.handle, func(err error) {
		c.deadline.Stop()
		c.finish(err)
		c.svc.agents.end(c)
	})
}

// refuse sends an error frame, then closes with code and reason (the frame goes out first).
func (c *agentConn) refuse(message string, d wsconn.Disconnect) {
	c.sendJSON(agentwire.NewError(message))
	c.conn.Close(d)
}

func (c *agentConn) sendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("agent frame not encodable", "err", err)
		return
	}
	c.conn.Send(b)
}

func (c *agentConn) invalid(why error) {
	c.log.Debug("invalid agent message", "err", why)
	c.sendJSON(agentwire.NewError(agentwire.MessageInvalidMessage))
}

// handle is Start's callback: one frame at a time, on the goroutine that read it. Only cheap work
// happens here (peek, replies, pings); telemetry goes to the worker.
func (c *agentConn) handle(msg []byte) {
	if c.closing {
		return
	}
	env, err := agentwire.Peek(msg)
	if !c.authed {
		if err != nil || env.Type != agentwire.TypeAuth {
			c.closing = true
			c.refuse(agentwire.MessageInvalidMessage, wsconn.DisconnectPolicy.WithReason(reasonAuthRequired))
			return
		}
		c.authenticate(msg)
		return
	}
	if err != nil {
		c.invalid(err)
		return
	}
	if !c.shapeFixed {
		if sh := agentwire.ShapeOf(env); sh != agentwire.ShapeUnknown {
			c.shape.Store(int32(sh))
			c.shapeFixed = true
			c.log.Debug("agent shape", "shape", sh)
		}
	}
	switch {
	case agentwire.IsReply(env):
		c.handleReply(msg)
	case env.Type == agentwire.TypeMetrics, env.Type == agentwire.TypeLog, env.Type == agentwire.TypeFacts:
		c.telemetry.offer(env.Type, msg)
	case env.Type == agentwire.TypePing:
		c.sendJSON(agentwire.Ping{Type: agentwire.TypePong})
	case env.Type == agentwire.TypePong:
		// the answer to nothing we send; harmless
	case env.Type == agentwire.TypeError:
		m, _ := agentwire.Decode[agentwire.Error](msg)
		c.log.Info("agent reported an error", "message", m.Message)
	default: // unknown type, or a second auth
		c.invalid(fmt.Errorf("unexpected type %q", env.Type))
	}
}

// presence is the Object of agents.online / agents.offline events.
type presence struct {
	ServerID   string    `json:"server_id"`
	RemoteAddr string    `json:"remote_addr"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"time"`
}

// finish runs once the read loop has ended: fail what waits on the agent, leave NATS, let the
// telemetry worker finish what it holds, and tell the world the server is offline unless
// another connection took over.
func (c *agentConn) finish(readErr error) {
	if !c.authed {
		c.log.Debug("agent connection ended before auth", "err", readErr)
		return
	}
	c.unsubscribe()
	c.untrack()
	observeAgent(-1)
	c.pending.close(agentwire.RPCReply{Code: agentwire.CodeGone, Error: "agent disconnected before answering"})
	c.telemetry.stop()
	if c.replaced.Load() {
		c.log.Info("agent connection closed: replaced")
		return
	}
	reason := offlineReason(readErr, c.svc.agents.stopping())
	c.log.Info("agent disconnected", "reason", reason)
	c.svc.emit("agents", "offline", c.info.ServerID, "agent:"+c.info.KeyID, presence{
		ServerID: c.info.ServerID, RemoteAddr: c.remote, Reason: reason, Time: time.Now().UTC(),
	})
}

// offlineReason says in words why a connection ended.
func offlineReason(err error, shuttingDown bool) string {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case shuttingDown:
		return "ingest shutting down"
	case errors.As(err, &ce):
		return fmt.Sprintf("closed by agent (%d %s)", ce.Code, ce.Text)
	case errors.As(err, &ne) && ne.Timeout():
		return "heartbeat timeout"
	case errors.Is(err, websocket.ErrReadLimit):
		return "frame too large"
	case err == nil:
		return "closed"
	default:
		return "connection lost"
	}
}
