package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/wsconn"
)

// The auth and takeover state machine of one agent connection, run once, in the read of
// the first frame:
//
//	new --(not auth / too late)--> refused 1008
//	new --(bad key)--> refused 1008; (key check down)--> refused 1011
//	new --(key ok)--> asks the holder (subject.AgentHolder)
//	asking --(holder refuses: replaced too often)--> refused 4004
//	asking --(no holder, holder agrees, holder silent)--> announces (subject.AgentTakeover),
//	        serves commands --> accepted (the holder, if any, closes with 4002)
//
// A holder that is asked records the takeover. Takeovers are counted per server over a window
// (Config.AgentTakeoverWindow), and the count travels from holder to successor, so it spans
// ingests. Once Config.AgentTakeoverLimit takeovers happened within the window, the holder
// refuses newcomers until a window passes without one: two agents sharing one key stop
// knocking each other off, while a single agent after a blip (one takeover of its own
// half-dead connection) always gets in.

// takeover is the payload on subject.AgentTakeover: the new connection's id and accept time.
type takeover struct {
	Conn string `json:"conn"`
	At   int64  `json:"at,omitempty"` // Unix nanoseconds; absent counts as newer than anything
}

// holderQuery is a new connection's question on subject.AgentHolder.
type holderQuery struct {
	Conn   string `json:"conn"`
	Remote string `json:"remote"`
}

// holderAnswer is the holder's verdict. Takeovers lists the takeovers of the server within the
// window (Unix nanoseconds), this one included, for the successor to carry on.
type holderAnswer struct {
	Refused   bool    `json:"refused,omitempty"`
	Takeovers []int64 `json:"takeovers,omitempty"`
}

// holderWait bounds the question to the holder: a holder on a half-dead ingest must not keep
// the real agent out, so silence counts as consent (the newer wins).
const holderWait = 2 * time.Second

// takeoverRules are the churn bounds.
type takeoverRules struct {
	window time.Duration
	limit  int
}

// takeoverState is what the holding connection knows about its server's recent takeovers.
type takeoverState struct {
	mu        sync.Mutex
	takeovers []time.Time // within the window, oldest first; guarded by mu
	blocked   time.Time   // newcomers are refused until then; guarded by mu
}

// decide answers a newcomer at now. first is true for the refusal that starts a block, the
// one worth a log line.
func (s *takeoverState) decide(now time.Time, r takeoverRules) (ans holderAnswer, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.takeovers = slices.DeleteFunc(s.takeovers, func(t time.Time) bool { return now.Sub(t) >= r.window })
	switch {
	case now.Before(s.blocked):
		s.blocked = now.Add(r.window) // still contested: stay blocked while the other keeps trying
		return holderAnswer{Refused: true}, false
	case len(s.takeovers) >= r.limit:
		s.blocked = now.Add(r.window)
		return holderAnswer{Refused: true}, true
	}
	s.takeovers = append(s.takeovers, now)
	ans.Takeovers = make([]int64, len(s.takeovers))
	for i, t := range s.takeovers {
		ans.Takeovers[i] = t.UnixNano()
	}
	return ans, false
}

// inherit takes over the history the previous holder handed on.
func (s *takeoverState) inherit(takeovers []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.takeovers = s.takeovers[:0]
	for _, n := range takeovers {
		s.takeovers = append(s.takeovers, time.Unix(0, n))
	}
}

// authenticate checks the first message's key and, when valid, makes the connection the
// server's: holder check, takeover announcement, RPC subscription, auth_success, online event.
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
	refused, err := c.subscribe()
	switch {
	case refused:
		c.unsubscribe()
		c.log.Debug("agent refused: its server's connection was replaced too often")
		c.refuse(c.svc.churnMessage(sid), wsconn.DisconnectChurn)
		return
	case err != nil:
		c.log.Warn("agent subscriptions failed", "err", err)
		c.unsubscribe()
		c.refuse(reasonAuthDown, wsconn.DisconnectInternal.WithReason("cannot register the connection now, try again"))
		return
	}
	c.closing, c.authed = false, true
	c.telemetry = c.startTelemetry()
	_, c.untrack = c.svc.tracker.Track(registry.Conn{RemoteAddr: c.remote, Principal: "agent:" + c.info.KeyID,
		CreateTime: c.acceptedAt.UTC(), Websocket: true, Endpoint: EndpointAgent, ServerID: sid},
		func(reason string) { c.conn.Close(wsconn.DisconnectKicked.WithReason(reason)) })
	c.sendJSON(agentwire.AuthSuccess{Type: agentwire.TypeAuthSuccess, ServerID: sid, Message: agentwire.MessageConnected})
	c.log.Info("agent connected")
	observeAgent(1)
	c.svc.emit("agents", "online", sid, "agent:"+c.info.KeyID, presence{
		ServerID: sid, RemoteAddr: c.remote, Reason: "connected", Time: c.acceptedAt.UTC(),
	})
}

// churnMessage is the error frame a refused agent gets: what happened and what to do.
func (s *Service) churnMessage(serverID string) string {
	return fmt.Sprintf("Refused: the connection of server %q was replaced %d times within %s; "+
		"another agent is probably using the same API key. Give each agent its own key; retry later.",
		serverID, s.cfg.AgentTakeoverLimit, s.cfg.AgentTakeoverWindow)
}

// subscribe listens for newer connections of the same server and for the key's revocation,
// asks the current holder (refused: it said no), announces this connection (closing older
// ones anywhere), and serves the server's holder and RPC subjects. The final flush makes sure
// the NATS server has the subscriptions before the agent hears auth_success, so a command
// sent right after finds it.
func (c *agentConn) subscribe() (refused bool, err error) {
	nc, sid := c.svc.nc, c.info.ServerID
	sub, err := nc.Subscribe(subject.AgentTakeover(sid), c.onTakeover)
	if err != nil {
		return false, fmt.Errorf("subscribe takeover: %w", err)
	}
	c.subs = append(c.subs, sub)
	// A revoked key ends its connection now, not at the agent's next connect.
	sub, err = nc.Subscribe(authwire.SubjectAPIKeyRevoked(c.info.KeyID), func(*nats.Msg) {
		c.log.Info("api key revoked: closing the agent connection")
		c.refuse(agentwire.MessageInvalidKey, wsconn.DisconnectPolicy.WithReason(agentwire.MessageInvalidKey))
	})
	if err != nil {
		return false, fmt.Errorf("subscribe revocation: %w", err)
	}
	c.subs = append(c.subs, sub)
	ans := c.askHolder()
	if ans.Refused {
		return true, nil
	}
	c.takeover.inherit(ans.Takeovers)
	announce, _ := json.Marshal(takeover{Conn: c.id, At: c.acceptedAt.UnixNano()})
	if err := nc.Publish(subject.AgentTakeover(sid), announce); err != nil {
		return false, fmt.Errorf("announce: %w", err)
	}
	if sub, err = nc.Subscribe(subject.AgentHolder(sid), c.onHolderQuery); err != nil {
		return false, fmt.Errorf("subscribe holder: %w", err)
	}
	c.subs = append(c.subs, sub)
	if sub, err = nc.Subscribe(subject.AgentRPC(sid), c.onRPC); err != nil {
		return false, fmt.Errorf("subscribe rpc: %w", err)
	}
	c.subs = append(c.subs, sub)
	if err := nc.FlushTimeout(stateTimeout); err != nil {
		return false, fmt.Errorf("flush: %w", err)
	}
	return false, nil
}

// askHolder asks whoever holds the server whether this connection may take over. No holder,
// a silent one or a NATS failure all mean yes: the newer wins unless a live holder says no.
func (c *agentConn) askHolder() holderAnswer {
	q, _ := json.Marshal(holderQuery{Conn: c.id, Remote: c.remote})
	ctx, cancel := context.WithTimeout(context.Background(), holderWait)
	defer cancel()
	m, err := c.svc.nc.RequestWithContext(ctx, subject.AgentHolder(c.info.ServerID), q)
	var ans holderAnswer
	switch {
	case errors.Is(err, nats.ErrNoResponders):
	case err != nil:
		c.log.Info("holder of the server did not answer: taking over", "err", err)
	case json.Unmarshal(m.Data, &ans) != nil:
		c.log.Warn("holder answer undecodable: taking over")
		ans = holderAnswer{}
	}
	return ans
}

// onHolderQuery answers a newer connection of the same server (here or on another ingest).
func (c *agentConn) onHolderQuery(m *nats.Msg) {
	var q holderQuery
	if json.Unmarshal(m.Data, &q) != nil || q.Conn == c.id || c.replaced.Load() {
		return // a replaced connection stays silent: its successor answers
	}
	rules := takeoverRules{window: c.svc.cfg.AgentTakeoverWindow, limit: c.svc.cfg.AgentTakeoverLimit}
	ans, first := c.takeover.decide(time.Now(), rules)
	if first {
		// Logged once per episode, by the holder, wherever the newcomers land.
		c.log.Warn("agent connection replaced too often: refusing newer connections for this server",
			"takeovers", rules.limit, "window", rules.window, "newcomer", q.Remote,
			"hint", "two agents probably share one API key")
	}
	b, _ := json.Marshal(ans)
	if err := m.Respond(b); err != nil {
		c.log.Debug("holder answer not sent", "err", err)
	}
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
