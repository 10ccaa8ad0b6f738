// Package agentrpc is the requesting side of a call to an agent: an agentwire.RPCRequest sent
// with NATS request/reply to subject.AgentRPC(server), answered by whichever ingest holds that
// server's agent. Every caller (ingest's gRPC AgentService, the edge's ChatOps REST API) uses
// Call, so offline, timeout and bus failures mean the same everywhere; JobIDs numbers the
// calls as Salt numbers jobs.
package agentrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/subject"
)

// Errors of Call, besides the caller's own context errors.
var (
	// ErrOffline: no ingest holds an agent for the server (NATS had no responders), or the
	// agent left before answering.
	ErrOffline = errors.New("agent offline")
	// ErrGone: the agent's connection ended while the request waited. It wraps ErrOffline.
	ErrGone = fmt.Errorf("%w: left before answering", ErrOffline)
	// ErrTimeout: the agent did not answer within the request's timeout.
	ErrTimeout = errors.New("agent did not answer in time")
	// ErrUnavailable: NATS could not carry the request or its answer.
	ErrUnavailable = errors.New("event bus unavailable")
)

// Margin is what a requester waits beyond the request's timeout, so that the holding ingest's
// own timeout reply arrives before the requester gives up.
const Margin = 2 * time.Second

// Call sends req to serverID's agent and returns its reply. req.ID must be set and
// req.TimeoutMs positive (the holder enforces it); Call waits at most that plus Margin. A
// reply with a Code (agent_error, refused, invalid) is returned as a reply; offline (also
// "gone") and timeout are ErrOffline and ErrTimeout, NATS trouble ErrUnavailable.
func Call(ctx context.Context, nc *nats.Conn, serverID string, req agentwire.RPCRequest) (agentwire.RPCReply, error) {
	if serverID == "" || req.ID == "" || req.TimeoutMs <= 0 {
		return agentwire.RPCReply{}, fmt.Errorf("%w: server id, request id and timeout must be set", agentwire.ErrInvalid)
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	body, err := json.Marshal(req)
	if err != nil {
		return agentwire.RPCReply{}, fmt.Errorf("%w: %w", agentwire.ErrInvalid, err)
	}
	wait, cancel := context.WithTimeout(ctx, timeout+Margin)
	defer cancel()
	msg, err := nc.RequestWithContext(wait, subject.AgentRPC(serverID), body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return agentwire.RPCReply{}, fmt.Errorf("%w: %s", ErrOffline, serverID)
	case err != nil && ctx.Err() != nil:
		return agentwire.RPCReply{}, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return agentwire.RPCReply{}, fmt.Errorf("%w: no answer within %s", ErrTimeout, timeout)
	case err != nil:
		return agentwire.RPCReply{}, fmt.Errorf("%w: agent request: %w", ErrUnavailable, err)
	}
	var r agentwire.RPCReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return agentwire.RPCReply{}, fmt.Errorf("%w: undecodable agent reply: %w", ErrUnavailable, err)
	}
	switch r.Code {
	case agentwire.CodeGone:
		return r, fmt.Errorf("%w: %s", ErrGone, serverID)
	case agentwire.CodeTimeout:
		return r, fmt.Errorf("%w: %s", ErrTimeout, r.Error)
	}
	return r, nil
}

// JobIDs hands out Salt-style job ids, YYYYMMDDhhmmssffffff (UTC, microseconds), strictly
// increasing within the process: a second job in the same microsecond takes the next one.
// The zero value is ready.
type JobIDs struct {
	mu   sync.Mutex
	last time.Time // guarded by mu
}

// Next returns the id for a job starting at now.
func (j *JobIDs) Next(now time.Time) string {
	t := now.UTC().Truncate(time.Microsecond)
	j.mu.Lock()
	if !t.After(j.last) {
		t = j.last.Add(time.Microsecond)
	}
	j.last = t
	j.mu.Unlock()
	return t.Format("20060102150405") + fmt.Sprintf("%06d", t.Nanosecond()/1000)
}
