package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
)

// Close reasons (and error frame texts where the seed gives none).
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

// takeover is the payload on subject.AgentTakeover: the new connection's id and accept time.
type takeover struct {
	Conn string `json:"conn"`
	At   int64  `json:"at,omitempty"` // Unix nanoseconds; absent counts as newer than anything
}

// agentConn is one agent WebSocket. The read goroutine (ReadLoop) owns the auth state and
// the message handling; NATS callbacks (RPC requests, takeovers) run on NATS goroutines and
// touch only conn (safe for concurrent use), shape (atomic) and the fields under mu.
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

	replaced atomic.Bool // closed by a takeover: no offline event
	untrack  func()      // removes the connection from the registry; set at auth

	mu      sync.Mutex
	pending map[string]chan agentwire.RPCReply // guarded by mu
	gone    bool                               // the connection ended; guarded by mu
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
		pending: make(map[string]chan agentwire.RPCReply),
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
	err := c.conn.ReadLoop(c.handle)
	c.deadline.Stop()
	c.finish(err)
	c.svc.agents.end(c)
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

// handle is ReadLoop's callback: one frame at a time, on the read goroutine.
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
	case env.Type == agentwire.TypeMetrics:
		c.handleMetrics(msg)
	case env.Type == agentwire.TypeLog:
		c.handleLog(msg)
	case env.Type == agentwire.TypeFacts:
		c.handleFacts(msg)
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

// authenticate checks the first message's key and, when valid, makes the connection the
// server's: takeover announcement, RPC subscription, auth_success, online event.
func (c *agentConn) authenticate(msg []byte) {
	if !c.deadline.Stop() {
		c.closing = true // refused for taking too long
		return
	}
	c.closing = true // until proven otherwise
	auth, err := agentwire.Decode[agentwire.Auth](msg)
	if err == nil {
		c.info, err = c.svc.verifyKey(auth.APIKey)
	}
	switch {
	case err == nil:
	case errors.Is(err, authwire.ErrUnauthorized), errors.Is(err, agentwire.ErrInvalid):
		c.log.Info("agent refused", "err", err)
		c.refuse(agentwire.MessageInvalidKey, wsconn.DisconnectPolicy.WithReason(agentwire.MessageInvalidKey))
		return
	default:
		c.log.Warn("agent key not checked", "err", err)
		c.refuse(reasonAuthDown, wsconn.DisconnectInternal.WithReason(reasonAuthDown))
		return
	}
	sid := c.info.ServerID
	c.log = c.log.With("server_id", sid, "key_id", c.info.KeyID)
	c.acceptedAt = time.Now()
	if err := c.subscribe(); err != nil {
		c.log.Warn("agent subscriptions failed", "err", err)
		c.unsubscribe()
		c.refuse(reasonAuthDown, wsconn.DisconnectInternal.WithReason("cannot register the connection now, try again"))
		return
	}
	c.closing, c.authed = false, true
	_, c.untrack = c.svc.tracker.Track(registry.Conn{RemoteAddr: c.remote, Principal: "agent:" + c.info.KeyID,
		CreateTime: c.acceptedAt.UTC(), Websocket: true, Endpoint: EndpointAgent, ServerID: sid},
		func(reason string) { c.conn.Close(wsconn.DisconnectKicked.WithReason(reason)) })
	c.sendJSON(agentwire.AuthSuccess{Type: agentwire.TypeAuthSuccess, ServerID: sid, Message: agentwire.MessageConnected})
	c.log.Info("agent connected")
	metrics.IngestAgents.Inc()
	c.svc.emit("agents", "online", sid, "agent:"+c.info.KeyID, presence{
		ServerID: sid, RemoteAddr: c.remote, Reason: "connected", Time: c.acceptedAt.UTC(),
	})
}

// presence is the Object of agents.online / agents.offline events.
type presence struct {
	ServerID   string    `json:"server_id"`
	RemoteAddr string    `json:"remote_addr"`
	Reason     string    `json:"reason"`
	Time       time.Time `json:"time"`
}

// subscribe listens for newer connections of the same server, announces this one (closing
// older ones anywhere), and serves the server's RPC subject. The final flush makes sure the
// NATS server has the subscriptions before the agent hears auth_success, so a command sent
// right after finds it.
func (c *agentConn) subscribe() error {
	nc, sid := c.svc.nc, c.info.ServerID
	sub, err := nc.Subscribe(subject.AgentTakeover(sid), c.onTakeover)
	if err != nil {
		return fmt.Errorf("subscribe takeover: %w", err)
	}
	c.subs = append(c.subs, sub)
	// A revoked key ends its connection now, not at the agent's next connect.
	sub, err = nc.Subscribe(authwire.SubjectAPIKeyRevoked(c.info.KeyID), func(*nats.Msg) {
		c.log.Info("api key revoked: closing the agent connection")
		c.refuse(agentwire.MessageInvalidKey, wsconn.DisconnectPolicy.WithReason(agentwire.MessageInvalidKey))
	})
	if err != nil {
		return fmt.Errorf("subscribe revocation: %w", err)
	}
	c.subs = append(c.subs, sub)
	announce, _ := json.Marshal(takeover{Conn: c.id, At: c.acceptedAt.UnixNano()})
	if err := nc.Publish(subject.AgentTakeover(sid), announce); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	if sub, err = nc.Subscribe(subject.AgentRPC(sid), c.onRPC); err != nil {
		return fmt.Errorf("subscribe rpc: %w", err)
	}
	c.subs = append(c.subs, sub)
	if err := nc.FlushTimeout(stateTimeout); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

func (c *agentConn) unsubscribe() {
	for _, sub := range c.subs {
		_ = sub.Unsubscribe()
	}
	c.subs = nil
}

// onTakeover closes this connection when a newer one for the same server was accepted
// (here or on another ingest). Equal times, which only a coarse clock gives, are broken by
// the connection id so that exactly one survives.
func (c *agentConn) onTakeover(m *nats.Msg) {
	var t takeover
	if json.Unmarshal(m.Data, &t) != nil || t.Conn == c.id {
		return
	}
	mine := c.acceptedAt.UnixNano()
	if t.At != 0 && (t.At < mine || (t.At == mine && t.Conn < c.id)) {
		return // an announcement older than us (delayed); we are the newer one
	}
	c.log.Info("agent connection replaced", "by", t.Conn)
	c.replaced.Store(true)
	c.conn.Close(wsconn.DisconnectReplaced.WithReason(reasonReplaced))
}

// finish runs once the read loop has ended: fail what waits on the agent, leave NATS, and
// tell the world the server is offline unless another connection took over.
func (c *agentConn) finish(readErr error) {
	if !c.authed {
		c.log.Debug("agent connection ended before auth", "err", readErr)
		return
	}
	c.unsubscribe()
	c.untrack()
	metrics.IngestAgents.Dec()
	c.mu.Lock()
	c.gone = true
	for id, ch := range c.pending {
		ch <- agentwire.RPCReply{Code: agentwire.CodeGone, Error: "agent disconnected before answering"}
		delete(c.pending, id)
	}
	c.mu.Unlock()
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

func (c *agentConn) handleMetrics(msg []byte) {
	now := time.Now()
	sample, err := agentwire.NormalizeMetrics(msg, c.info.ServerID, now)
	if err != nil {
		c.invalid(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	fresh, err := c.svc.state.PutMetrics(ctx, c.info.ServerID, sample.Time, sample.JSON)
	cancel()
	if err != nil {
		// Live data beats deduplication while the store is down: publish anyway.
		c.log.Warn("latest sample not stored", "err", err)
		fresh = true
	}
	metrics.IngestSamples.Inc()
	if fresh {
		if err := c.svc.nc.Publish(subject.Metrics(c.info.ServerID), sample.JSON); err != nil {
			c.log.Warn("sample not published", "err", err)
		}
		for _, a := range c.svc.alerts.observe(c.info.ServerID, sample.Usage, now) {
			c.svc.publishAlert(a)
		}
	}
	if sample.Nested || sample.Seq > 0 || agentwire.Shape(c.shape.Load()) == agentwire.ShapeChatops {
		c.sendJSON(agentwire.MetricsReceived{Type: agentwire.TypeMetricsReceived, Status: agentwire.StatusOK, Seq: sample.Seq})
	}
}

// publishAlert sends an alert to the server's metrics viewers and as an event.
func (s *Service) publishAlert(a Alert) {
	b, err := json.Marshal(a)
	if err != nil {
		s.log.Error("alert not encodable", "err", err)
		return
	}
	if err := s.nc.Publish(subject.Alerts(a.ServerID), b); err != nil {
		s.log.Warn("alert not published", "err", err)
	}
	action := "raise"
	if a.Resolved {
		action = "resolve"
	}
	s.log.Info("alert", "action", action, "server_id", a.ServerID, "type", a.Type, "message", a.Message)
	s.emit("alerts", action, a.ServerID, "ingest", a)
}

func (c *agentConn) handleLog(msg []byte) {
	entry, err := agentwire.NormalizeLog(msg, c.info.ServerID, time.Now())
	if err != nil {
		c.invalid(err)
		return
	}
	if err := c.svc.nc.Publish(subject.Logs(c.info.ServerID), entry.JSON); err != nil {
		c.log.Warn("log entry not published", "err", err)
	}
}

func (c *agentConn) handleFacts(msg []byte) {
	f, err := agentwire.Decode[struct {
		Data json.RawMessage `json:"data"`
	}](msg)
	if err == nil && (len(f.Data) == 0 || f.Data[0] != '{') {
		err = fmt.Errorf("%w: facts: data must be an object", agentwire.ErrInvalid)
	}
	if err != nil {
		c.invalid(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	if err := c.svc.state.PutFacts(ctx, c.info.ServerID, f.Data); err != nil {
		c.log.Warn("facts not stored", "err", err)
	}
	c.svc.emit("agents", "facts", c.info.ServerID, "agent:"+c.info.KeyID, f.Data)
}

// handleReply hands an agent's answer to the request waiting for it.
func (c *agentConn) handleReply(msg []byte) {
	id, reply, err := agentwire.DecodeReply(msg)
	if err != nil {
		c.invalid(err)
		return
	}
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch == nil {
		c.log.Debug("agent answered an unknown or expired request", "id", id)
		return
	}
	ch <- reply // buffered, and only one sender gets ch out of pending
}

// onRPC serves one request from subject.AgentRPC: it forwards the request to the agent and
// answers when the agent does, when the timeout passes, or when the connection ends. It
// returns at once; the wait happens on a goroutine of its own, at most maxInFlight of them.
func (c *agentConn) onRPC(m *nats.Msg) {
	if c.replaced.Load() {
		// A newer connection for this server holds the agent and answers; until this one's
		// read loop ends (up to a write timeout for a half-dead peer) it must stay silent, or
		// its "gone" would win the race against the real answer.
		return
	}
	respond := func(r agentwire.RPCReply) {
		b, _ := json.Marshal(r)
		if err := m.Respond(b); err != nil {
			c.log.Debug("rpc reply not sent", "err", err)
		}
	}
	var req agentwire.RPCRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		respond(agentwire.RPCReply{Code: agentwire.CodeInvalid, Error: "request is not JSON"})
		return
	}
	shape := agentwire.Shape(c.shape.Load())
	frame, err := agentwire.EncodeRequest(shape, req)
	if err != nil {
		respond(agentwire.RPCReply{Code: agentwire.CodeInvalid, Error: err.Error()})
		return
	}
	timeout := c.svc.commandTimeout(req.TimeoutMs)
	ch := make(chan agentwire.RPCReply, 1)
	c.mu.Lock()
	switch {
	case c.gone:
		c.mu.Unlock()
		respond(agentwire.RPCReply{Code: agentwire.CodeGone, Error: "agent disconnected"})
		return
	case len(c.pending) >= maxInFlight:
		c.mu.Unlock()
		respond(agentwire.RPCReply{Code: agentwire.CodeAgentError, Error: fmt.Sprintf("agent has %d requests in flight", maxInFlight)})
		return
	case c.pending[req.ID] != nil:
		c.mu.Unlock()
		respond(agentwire.RPCReply{Code: agentwire.CodeInvalid, Error: "duplicate request id"})
		return
	}
	c.pending[req.ID] = ch
	// Added under mu, before finish can mark the connection gone and release the shutdown
	// wait that then waits for rpcs.
	c.svc.agents.rpcs.Add(1)
	c.mu.Unlock()

	start := time.Now()
	sid := c.info.ServerID
	c.svc.emitJobNew(sid, req, start)
	if !c.conn.Send(frame) {
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
		r := agentwire.RPCReply{Code: agentwire.CodeGone, Error: "agent disconnected"}
		respond(r)
		c.svc.emitJobRet(sid, req, r)
		c.svc.agents.rpcs.Done()
		return
	}
	go func() {
		defer c.svc.agents.rpcs.Done()
		t := time.NewTimer(timeout + agentGrace)
		defer t.Stop()
		var r agentwire.RPCReply
		select {
		case r = <-ch:
		case <-t.C:
			c.mu.Lock()
			if c.pending[req.ID] == ch {
				delete(c.pending, req.ID)
			}
			c.mu.Unlock()
			select {
			case r = <-ch: // answered in the same instant: the answer wins
			default:
				r = agentwire.RPCReply{Code: agentwire.CodeTimeout, Error: fmt.Sprintf("agent did not answer within %s", timeout)}
			}
		}
		if r.Code == "" && r.DurationMs == 0 && shape == agentwire.ShapeChatops {
			r.DurationMs = time.Since(start).Milliseconds() // chatops reports no duration
		}
		respond(r)
		c.svc.emitJobRet(sid, req, r)
	}()
}

// commandTimeout turns a request's timeout into the wait: the default when unset, never more
// than the maximum.
func (s *Service) commandTimeout(ms int64) time.Duration {
	d := time.Duration(ms) * time.Millisecond
	if ms <= 0 {
		d = s.cfg.CommandTimeout
	}
	return min(d, s.cfg.MaxCommandTimeout)
}

// agentSet tracks this ingest's agent connections so Run can close them on shutdown.
type agentSet struct {
	mu      sync.Mutex
	conns   map[*agentConn]struct{} // guarded by mu
	closing bool                    // guarded by mu
	wg      sync.WaitGroup          // one per connection being served
	rpcs    sync.WaitGroup          // one per RPC waiting for an agent
}

func (a *agentSet) init() { a.conns = make(map[*agentConn]struct{}) }

// begin reserves a slot for a new connection; false once shutdown started.
func (a *agentSet) begin() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return false
	}
	a.wg.Add(1)
	return true
}

// track registers c for shutdown; a connection arriving during shutdown is closed at once.
func (a *agentSet) track(c *agentConn) {
	a.mu.Lock()
	closing := a.closing
	if !closing {
		a.conns[c] = struct{}{}
	}
	a.mu.Unlock()
	if closing {
		c.conn.Close(wsconn.DisconnectShutdown)
	}
}

// end releases the slot of begin (c nil: the upgrade failed).
func (a *agentSet) end(c *agentConn) {
	if c != nil {
		a.mu.Lock()
		delete(a.conns, c)
		a.mu.Unlock()
	}
	a.wg.Done()
}

func (a *agentSet) stopping() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closing
}

// shutdownWait bounds how long shutdown waits for connections to end (their close handshakes
// take up to a second) and for RPC waits to be answered.
const shutdownWait = 5 * time.Second

// shutdown closes every connection with 1001 and waits (bounded) for them and for the RPCs
// they were serving.
func (a *agentSet) shutdown(log *slog.Logger) {
	a.mu.Lock()
	a.closing = true
	conns := make([]*agentConn, 0, len(a.conns))
	for c := range a.conns {
		conns = append(conns, c)
	}
	a.mu.Unlock()
	for _, c := range conns {
		c.conn.Close(wsconn.DisconnectShutdown)
	}
	done := make(chan struct{})
	go func() {
		a.wg.Wait()
		a.rpcs.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownWait):
		log.Warn("agent connections still open after shutdown wait", "wait", shutdownWait)
	}
}
