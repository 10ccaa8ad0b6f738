package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/agentrpc"
	"github.com/heraldhq/herald/pkg/agentwire"
)

// Errors of CallAgent, besides the caller's own context errors: agentrpc's, so that every
// caller of an agent reads them alike.
var (
	// ErrAgentOffline: no ingest holds an agent for the server, or it left before answering.
	ErrAgentOffline = agentrpc.ErrOffline
	// ErrAgentGone: the agent's connection ended while the request waited; wraps ErrAgentOffline.
	ErrAgentGone = agentrpc.ErrGone
	// ErrAgentTimeout: the agent did not answer within the request's timeout.
	ErrAgentTimeout = agentrpc.ErrTimeout
)

// NewJobID returns a fresh Salt-style job id (YYYYMMDDhhmmssffffff) for an RPCRequest.
func (s *Service) NewJobID() string { return s.jids.Next(time.Now()) }

// CallAgent sends req to the agent of serverID through whichever ingest holds it and returns
// the agent's reply (agentrpc.Call). req.ID must be set (NewJobID); req.TimeoutMs <= 0 means
// the configured default, and more than the maximum is cut to it. NATS trouble is
// ErrUnavailable.
func (s *Service) CallAgent(ctx context.Context, serverID string, req agentwire.RPCRequest) (agentwire.RPCReply, error) {
	req.TimeoutMs = s.commandTimeout(req.TimeoutMs).Milliseconds()
	r, err := agentrpc.Call(ctx, s.nc, serverID, req)
	if errors.Is(err, agentrpc.ErrUnavailable) {
		return r, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return r, err
}
