package ingest

import (
	"context"
	"errors"
	"github.com/heraldhq/herald/pkg/grpcauth"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heraldhq/herald/pkg/agentwire"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/token"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// Input bounds of AgentService.
const (
	maxCommandBytes = 64 << 10
	maxIDBytes      = 256
	maxTail         = 10000
)

// agentServer is the gRPC adapter of CallAgent: authentication, validation, conversion and
// error mapping.
type agentServer struct {
	heraldv1.UnimplementedAgentServiceServer
	svc *Service
}

// RunCommand implements heraldv1.AgentServiceServer.
func (g *agentServer) RunCommand(ctx context.Context, req *heraldv1.RunCommandRequest) (*heraldv1.RunCommandResponse, error) {
	claims, err := g.svc.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	sid := req.GetServerId()
	if err := checkServerID(sid); err != nil {
		return nil, err
	}
	switch cmd := req.GetCommand(); {
	case strings.TrimSpace(cmd) == "":
		return nil, status.Error(codes.InvalidArgument, "command: must not be empty")
	case len(cmd) > maxCommandBytes:
		return nil, status.Errorf(codes.InvalidArgument, "command: longer than %d bytes", maxCommandBytes)
	}
	timeout, err := g.svc.requestTimeout(req.GetTimeout())
	if err != nil {
		return nil, err
	}
	if err := g.svc.authorize(claims, "commands", "run", sid); err != nil {
		return nil, err
	}
	rpc := agentwire.RPCRequest{Kind: agentwire.KindCommand, ID: g.svc.NewJobID(), Command: req.GetCommand(),
		TimeoutMs: timeout.Milliseconds(), Principal: claims.principal}
	r, err := g.svc.CallAgent(ctx, sid, rpc)
	observeCommand("command", r, err)
	if err != nil {
		return nil, g.svc.agentStatus(ctx, sid, err)
	}
	if r.Code != "" {
		return nil, replyStatus(sid, r)
	}
	return &heraldv1.RunCommandResponse{
		Output:    r.Output,
		ExitCode:  int32(r.ExitCode),
		Duration:  durationpb.New(time.Duration(r.DurationMs) * time.Millisecond),
		Truncated: r.Truncated,
		JobId:     rpc.ID,
	}, nil
}

// DockerAction implements heraldv1.AgentServiceServer.
func (g *agentServer) DockerAction(ctx context.Context, req *heraldv1.DockerActionRequest) (*heraldv1.DockerActionResponse, error) {
	claims, err := g.svc.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	sid, action, cid := req.GetServerId(), req.GetAction(), req.GetContainerId()
	if err := checkServerID(sid); err != nil {
		return nil, err
	}
	switch {
	case !agentwire.ValidAction(action):
		return nil, status.Errorf(codes.InvalidArgument, "action: must be start, stop, restart or logs, got %q", action)
	case cid == "":
		return nil, status.Error(codes.InvalidArgument, "container_id: must not be empty")
	case len(cid) > maxIDBytes:
		return nil, status.Errorf(codes.InvalidArgument, "container_id: longer than %d bytes", maxIDBytes)
	case req.GetTail() < 0 || req.GetTail() > maxTail:
		return nil, status.Errorf(codes.InvalidArgument, "tail: must be between 0 and %d", maxTail)
	}
	if err := g.svc.authorize(claims, "docker", action, sid); err != nil {
		return nil, err
	}
	rpc := agentwire.RPCRequest{Kind: agentwire.KindDocker, ID: g.svc.NewJobID(), Action: action,
		ContainerID: cid, Tail: int(req.GetTail()), Principal: claims.principal}
	r, err := g.svc.CallAgent(ctx, sid, rpc)
	observeCommand("docker", r, err)
	if err != nil {
		return nil, g.svc.agentStatus(ctx, sid, err)
	}
	if r.Code == agentwire.CodeAgentError {
		// A docker failure on the host ("Docker not available", "Failed to start container:
		// ...") is the action's result, as docker_response success=false would be.
		return &heraldv1.DockerActionResponse{Success: false, Message: r.Error, JobId: rpc.ID}, nil
	}
	if r.Code != "" {
		return nil, replyStatus(sid, r)
	}
	return &heraldv1.DockerActionResponse{Success: r.Success, Message: r.Message, Logs: r.Logs, JobId: rpc.ID}, nil
}

func checkServerID(sid string) error {
	switch {
	case sid == "":
		return status.Error(codes.InvalidArgument, "server_id: must not be empty")
	case len(sid) > maxIDBytes:
		return status.Errorf(codes.InvalidArgument, "server_id: longer than %d bytes", maxIDBytes)
	}
	return nil
}

// requestTimeout validates a request's timeout: unset means the default, and it must be
// positive and at most the maximum.
func (s *Service) requestTimeout(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return s.cfg.CommandTimeout, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "timeout: %v", err)
	}
	t := d.AsDuration()
	switch {
	case t <= 0:
		return 0, status.Error(codes.InvalidArgument, "timeout: must be positive")
	case t < time.Millisecond:
		return 0, status.Error(codes.InvalidArgument, "timeout: must be at least 1ms")
	case t > s.cfg.MaxCommandTimeout:
		return 0, status.Errorf(codes.InvalidArgument, "timeout: must be at most %s", s.cfg.MaxCommandTimeout)
	}
	return t, nil
}

// caller is an authenticated gRPC caller.
type caller struct {
	principal string
	filters   []event.Filter
	expires   time.Time // the token's expiry, for calls that outlive it (PublishStream)
}

// authenticate reads "authorization: Bearer <token>" and verifies the token locally.
func (s *Service) authenticate(ctx context.Context) (caller, error) {
	if s.verifier == nil {
		return caller{}, status.Error(codes.Unauthenticated, "token verification is not configured on this ingest")
	}
	raw, err := grpcauth.IncomingToken(ctx)
	if err != nil {
		return caller{}, err
	}
	claims, err := s.verifier.Verify(ctx, raw)
	if errors.Is(err, token.ErrNoKey) {
		return caller{}, status.Errorf(codes.Unavailable, "cannot verify tokens yet: %v", err)
	}
	if err != nil {
		return caller{}, status.Errorf(codes.Unauthenticated, "invalid token: %v", err)
	}
	filters, err := event.ParsePermissions(claims.Permissions)
	if err != nil {
		return caller{}, status.Errorf(codes.Unauthenticated, "token carries a bad permission: %v", err)
	}
	return caller{principal: "user:" + claims.Subject, filters: filters, expires: claims.ExpiresAt}, nil
}

// authorize checks the caller may do typ.action on serverID: a token filter must match the
// synthetic event <typ>.<action>.<server_id> (as edges check metrics.read.<id>).
func (s *Service) authorize(c caller, typ, action, serverID string) error {
	want := event.Event{Type: typ, Action: action, Key: serverID, Scope: event.ScopeGlobal}
	for _, f := range c.filters {
		if f.Matches(&want) {
			return nil
		}
	}
	return status.Errorf(codes.PermissionDenied, "%s may not %s.%s on server %s", c.principal, typ, action, serverID)
}

// agentStatus maps a CallAgent error to its gRPC status; NATS details are logged, not sent.
func (s *Service) agentStatus(ctx context.Context, serverID string, err error) error {
	switch {
	case errors.Is(err, ErrAgentOffline):
		if errors.Is(err, ErrAgentGone) {
			return status.Errorf(codes.Unavailable, "agent %s disconnected before answering", serverID)
		}
		return status.Errorf(codes.Unavailable, "agent %s is offline", serverID)
	case errors.Is(err, ErrAgentTimeout):
		return status.Errorf(codes.DeadlineExceeded, "agent %s did not answer in time", serverID)
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, agentwire.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	default:
		s.log.Warn("agent call failed", "server_id", serverID, "err", err)
		return status.Error(codes.Unavailable, "event bus unavailable, retry later")
	}
}

// replyStatus maps an agent reply that carries a failure code.
func replyStatus(serverID string, r agentwire.RPCReply) error {
	switch r.Code {
	case agentwire.CodeRefused:
		return status.Errorf(codes.FailedPrecondition, "agent %s refused: %s", serverID, r.Error)
	case agentwire.CodeInvalid:
		return status.Errorf(codes.InvalidArgument, "agent %s cannot take this request: %s", serverID, r.Error)
	default:
		return status.Errorf(codes.FailedPrecondition, "agent %s reported an error: %s", serverID, r.Error)
	}
}
