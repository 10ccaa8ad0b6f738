package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// handleReply hands an agent's answer to the request waiting for it.
func (c *agentConn) handleReply(msg []byte) {
	id, reply, err := agentwire.DecodeReply(msg)
	if err != nil {
		c.invalid(err)
		return
	}
	if !c.pending.resolve(id, reply) {
		c.log.Debug("agent answered an unknown or expired request", "id", id)
	}
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
	ch, err := c.pending.add(req.ID)
	switch {
	case errors.Is(err, errCallsClosed):
		respond(agentwire.RPCReply{Code: agentwire.CodeGone, Error: err.Error()})
		return
	case errors.Is(err, errCallsDuplicate):
		respond(agentwire.RPCReply{Code: agentwire.CodeInvalid, Error: err.Error()})
		return
	case err != nil:
		respond(agentwire.RPCReply{Code: agentwire.CodeAgentError, Error: err.Error()})
		return
	}

	start := time.Now()
	sid := c.info.ServerID
	c.svc.emitJobNew(sid, req, start)
	if !c.conn.Send(frame) {
		c.pending.drop(req.ID, ch)
		r := agentwire.RPCReply{Code: agentwire.CodeGone, Error: "agent disconnected"}
		respond(r)
		c.svc.emitJobRet(sid, req, r)
		return
	}
	go func() {
		r, answered := c.pending.wait(req.ID, ch, timeout+agentGrace)
		if !answered {
			r = agentwire.RPCReply{Code: agentwire.CodeTimeout, Error: fmt.Sprintf("agent did not answer within %s", timeout)}
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
