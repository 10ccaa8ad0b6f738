package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/subject"
)

// Errors of CallAgent, besides the caller's own context errors.
var (
	// ErrAgentOffline: no ingest holds an agent for the server (NATS had no responders), or
	// the agent left before answering.
	ErrAgentOffline = errors.New("agent offline")
	// ErrAgentGone: the agent's connection ended while the request waited. It wraps
	// ErrAgentOffline.
	ErrAgentGone = fmt.Errorf("%w: left before answering", ErrAgentOffline)
	// ErrAgentTimeout: the agent did not answer within the request's timeout.
	ErrAgentTimeout = errors.New("agent did not answer in time")
)

// NewJobID returns a fresh Salt-style job id (YYYYMMDDhhmmssffffff) for an RPCRequest.
func (s *Service) NewJobID() string { return s.jids.next(time.Now()) }

// CallAgent sends req to the agent of serverID through whichever ingest holds it and returns
// the agent's reply. req.ID must be set (NewJobID); req.TimeoutMs <= 0 means the configured
// default, and more than the maximum is cut to it. It never waits longer than that timeout
// plus a small margin. A reply with a Code (agent_error, refused, invalid) is returned as a
// reply; offline (also "gone") and timeout are ErrAgentOffline and ErrAgentTimeout, NATS
// trouble ErrUnavailable.
func (s *Service) CallAgent(ctx context.Context, serverID string, req agentwire.RPCRequest) (agentwire.RPCReply, error) {
	if serverID == "" || req.ID == "" {
		return agentwire.RPCReply{}, fmt.Errorf("%w: server id and request id must be set", agentwire.ErrInvalid)
	}
	timeout := s.commandTimeout(req.TimeoutMs)
	req.TimeoutMs = timeout.Milliseconds()
	body, err := json.Marshal(req)
	if err != nil {
		return agentwire.RPCReply{}, fmt.Errorf("%w: %w", agentwire.ErrInvalid, err)
	}
	wait, cancel := context.WithTimeout(ctx, timeout+rpcMargin)
	defer cancel()
	msg, err := s.nc.RequestWithContext(wait, subject.AgentRPC(serverID), body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return agentwire.RPCReply{}, fmt.Errorf("%w: %s", ErrAgentOffline, serverID)
	case err != nil && ctx.Err() != nil:
		return agentwire.RPCReply{}, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return agentwire.RPCReply{}, fmt.Errorf("%w: no answer within %s", ErrAgentTimeout, timeout)
	case err != nil:
		return agentwire.RPCReply{}, fmt.Errorf("%w: agent request: %w", ErrUnavailable, err)
	}
	var r agentwire.RPCReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return agentwire.RPCReply{}, fmt.Errorf("%w: undecodable agent reply: %w", ErrUnavailable, err)
	}
	switch r.Code {
	case agentwire.CodeGone:
		return r, fmt.Errorf("%w: %s", ErrAgentGone, serverID)
	case agentwire.CodeTimeout:
		return r, fmt.Errorf("%w: %s", ErrAgentTimeout, r.Error)
	}
	return r, nil
}
