package connections

import (
	"context"
	"errors"
	"github.com/heraldhq/herald/pkg/grpcauth"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/registry"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// GRPC is the ConnectionService server.
type GRPC struct {
	heraldv1.UnimplementedConnectionServiceServer
	H *Handler
}

// authenticate reads "authorization: Bearer <token>" as AgentService does.
func (g *GRPC) authenticate(ctx context.Context) (access.Session, error) {
	tok, err := grpcauth.IncomingToken(ctx)
	if err != nil {
		return access.Session{}, err
	}
	sess, err := g.H.Auth.Token(ctx, tok)
	if err != nil {
		return access.Session{}, status.Error(codes.Unauthenticated, err.Error())
	}
	return sess, nil
}

// List implements heraldv1.ConnectionServiceServer.
func (g *GRPC) List(ctx context.Context, req *heraldv1.ListRequest) (*heraldv1.ListResponse, error) {
	sess, err := g.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if !MayList(sess) {
		return nil, status.Error(codes.PermissionDenied, "needs connections.list.*")
	}
	cs, err := List(ctx, g.H.Tracker, sess, registry.Query{Instance: req.GetInstance(), ServerID: req.GetServerId(),
		Principal: req.GetPrincipal(), Endpoint: req.GetEndpoint()})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "connection registry: %v", err)
	}
	out := &heraldv1.ListResponse{Connections: make([]*heraldv1.Connection, len(cs))}
	for i, c := range cs {
		out.Connections[i] = toProto(c)
	}
	return out, nil
}

// Get implements heraldv1.ConnectionServiceServer.
func (g *GRPC) Get(ctx context.Context, req *heraldv1.GetRequest) (*heraldv1.GetResponse, error) {
	sess, err := g.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	c, err := g.find(ctx, sess, req.GetRemoteAddr(), "list")
	if err != nil {
		return nil, err
	}
	return &heraldv1.GetResponse{Connection: toProto(c)}, nil
}

// Kick implements heraldv1.ConnectionServiceServer.
func (g *GRPC) Kick(ctx context.Context, req *heraldv1.KickRequest) (*heraldv1.KickResponse, error) {
	sess, err := g.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	c, err := g.find(ctx, sess, req.GetRemoteAddr(), "kick")
	if err != nil {
		return nil, err
	}
	switch err := registry.Kick(ctx, g.H.NC, c, sess.Principal()); {
	case errors.Is(err, registry.ErrNotKickable):
		return nil, status.Error(codes.FailedPrecondition, "a REST request cannot be kicked")
	case errors.Is(err, registry.ErrNotHeld):
		return nil, status.Errorf(codes.NotFound, "connection %s already ended", c.RemoteAddr)
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "kick: %v", err)
	}
	g.H.Log.Info("connection kicked", "remote_addr", c.RemoteAddr, "instance", c.Instance, "by", sess.Principal())
	return &heraldv1.KickResponse{Connection: toProto(c)}, nil
}

func (g *GRPC) find(ctx context.Context, sess access.Session, addr, action string) (registry.Conn, error) {
	if addr == "" {
		return registry.Conn{}, status.Error(codes.InvalidArgument, "remote_addr: must not be empty")
	}
	c, err := lookup(ctx, g.H.Tracker, addr)
	if errors.Is(err, registry.ErrNotFound) {
		return registry.Conn{}, status.Errorf(codes.NotFound, "connection %s not found", addr)
	}
	if err != nil {
		return registry.Conn{}, status.Errorf(codes.Unavailable, "connection registry: %v", err)
	}
	if !visible(sess, action, c) {
		return registry.Conn{}, status.Errorf(codes.PermissionDenied, "needs connections.%s.<principal>", action)
	}
	return c, nil
}

func toProto(c registry.Conn) *heraldv1.Connection {
	return &heraldv1.Connection{Id: c.ID, RemoteAddr: c.RemoteAddr, Principal: c.Principal,
		CreateTime: timestamppb.New(c.CreateTime), Websocket: c.Websocket, Instance: c.Instance,
		Endpoint: c.Endpoint, ServerId: c.ServerID}
}
