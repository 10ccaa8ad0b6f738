package auth

import (
	"context"
	"errors"
	"github.com/heraldhq/herald/pkg/grpcauth"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/pkg/event"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// manageAPIKeys is the synthetic event a caller's permissions must match
// to manage API keys. Its key is a literal "*", which only a wildcard key
// field matches: a key is a credential for a whole server, and managing
// them is an administrator's job, so "apikeys.manage.*" is required.
var manageAPIKeys = event.Event{Type: "apikeys", Action: "manage", Key: "*"}

// CreateAPIKey implements heraldv1.AuthServiceServer.
func (g grpcServer) CreateAPIKey(ctx context.Context, req *heraldv1.CreateAPIKeyRequest) (*heraldv1.CreateAPIKeyResponse, error) {
	ctx, err := g.authorize(ctx, &manageAPIKeys)
	if err != nil {
		return nil, err
	}
	k, err := g.s.CreateAPIKey(ctx, req.GetServerId(), req.GetName())
	if err != nil {
		return nil, g.apiKeyStatus(ctx, "create api key", err)
	}
	return &heraldv1.CreateAPIKeyResponse{
		Key:       k.Key,
		KeyId:     k.ID,
		ServerId:  k.ServerID,
		Name:      k.Name,
		CreatedAt: timestamppb.New(k.CreatedAt),
	}, nil
}

// ListAPIKeys implements heraldv1.AuthServiceServer.
func (g grpcServer) ListAPIKeys(ctx context.Context, req *heraldv1.ListAPIKeysRequest) (*heraldv1.ListAPIKeysResponse, error) {
	ctx, err := g.authorize(ctx, &manageAPIKeys)
	if err != nil {
		return nil, err
	}
	keys, err := g.s.ListAPIKeys(ctx, req.GetServerId())
	if err != nil {
		return nil, g.apiKeyStatus(ctx, "list api keys", err)
	}
	resp := &heraldv1.ListAPIKeysResponse{Keys: make([]*heraldv1.APIKey, len(keys))}
	for i, k := range keys {
		resp.Keys[i] = &heraldv1.APIKey{
			KeyId:     k.ID,
			ServerId:  k.ServerID,
			Name:      k.Name,
			CreatedAt: timestamppb.New(k.CreatedAt),
			Revoked:   k.Revoked,
		}
	}
	return resp, nil
}

// RevokeAPIKey implements heraldv1.AuthServiceServer.
func (g grpcServer) RevokeAPIKey(ctx context.Context, req *heraldv1.RevokeAPIKeyRequest) (*heraldv1.RevokeAPIKeyResponse, error) {
	ctx, err := g.authorize(ctx, &manageAPIKeys)
	if err != nil {
		return nil, err
	}
	if err := g.s.RevokeAPIKey(ctx, req.GetKeyId()); err != nil {
		return nil, g.apiKeyStatus(ctx, "revoke api key", err)
	}
	return &heraldv1.RevokeAPIKeyResponse{}, nil
}

// authorize checks the caller's token (metadata "authorization: Bearer
// <token>") and that its permissions match need. It returns ctx carrying
// the caller's name for the audit log.
func (g grpcServer) authorize(ctx context.Context, need *event.Event) (context.Context, error) {
	raw, err := grpcauth.IncomingToken(ctx)
	if err != nil {
		return ctx, err
	}
	claims, err := g.s.verifier.Verify(ctx, raw)
	if err != nil {
		return ctx, status.Error(codes.Unauthenticated, err.Error())
	}
	// Tokens are issued with parsed permissions; one that does not parse
	// grants nothing.
	perms, _ := event.ParsePermissions(claims.Permissions)
	for _, f := range perms {
		if f.Matches(need) {
			return withPrincipal(ctx, claims.Subject), nil
		}
	}
	g.s.log.LogAttrs(ctx, slog.LevelInfo, "permission denied", slog.String("principal", claims.Subject),
		slog.String("need", need.Type+"."+need.Action+"."+need.Key))
	return ctx, status.Errorf(codes.PermissionDenied, "permission %s.%s.%s required", need.Type, need.Action, need.Key)
}

// apiKeyStatus maps an API key error to a gRPC status; internal errors are
// logged and not shown.
func (g grpcServer) apiKeyStatus(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrAPIKeyNotFound):
		return status.Error(codes.NotFound, "api key not found")
	default:
		g.s.log.LogAttrs(ctx, slog.LevelError, op+" failed", slog.String("principal", principalFrom(ctx)), slog.Any("err", err))
		return status.Error(codes.Internal, "internal error")
	}
}
