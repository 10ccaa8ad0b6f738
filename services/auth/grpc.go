package auth

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldhq/herald/pkg/access"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// RegisterGRPC registers herald.v1.AuthService on s.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	heraldv1.RegisterAuthServiceServer(r, grpcServer{s: s})
}

// grpcServer adapts Service to the generated AuthServiceServer.
type grpcServer struct {
	heraldv1.UnimplementedAuthServiceServer
	s *Service
}

// Login implements heraldv1.AuthServiceServer.
func (g grpcServer) Login(ctx context.Context, req *heraldv1.LoginRequest) (*heraldv1.LoginResponse, error) {
	sess, err := g.s.LoginFrom(ctx, req.GetUsername(), req.GetPassword(), grpcPeerHost(ctx))
	if err != nil {
		return nil, g.loginStatus(ctx, req.GetUsername(), err)
	}
	return &heraldv1.LoginResponse{
		Token:       sess.Token,
		ExpiresAt:   timestamppb.New(sess.Claims.ExpiresAt),
		User:        sess.Claims.Subject,
		Permissions: sess.Claims.Permissions,
	}, nil
}

// Verify implements heraldv1.AuthServiceServer.
func (g grpcServer) Verify(ctx context.Context, req *heraldv1.VerifyRequest) (*heraldv1.VerifyResponse, error) {
	if req.GetToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "token: must not be empty")
	}
	c, err := g.s.verifier.Verify(ctx, req.GetToken())
	observeVerify(err)
	if err != nil {
		// The token package's errors are written for clients: expired, bad
		// signature or malformed, with the detail.
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return &heraldv1.VerifyResponse{
		User:        c.Subject,
		Permissions: c.Permissions,
		IssuedAt:    timestamppb.New(c.IssuedAt),
		ExpiresAt:   timestamppb.New(c.ExpiresAt),
	}, nil
}

// grpcPeerHost is the caller's host, for the login limiter.
func grpcPeerHost(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return access.ClientHost(p.Addr.String())
	}
	return ""
}

// loginStatus maps a Login error to a gRPC status; internal errors are
// logged and not shown.
func (g grpcServer) loginStatus(ctx context.Context, username string, err error) error {
	switch {
	case errors.Is(err, ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrBadCredentials):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrTooManyAttempts):
		return status.Error(codes.ResourceExhausted, err.Error())
	default:
		g.s.log.LogAttrs(ctx, slog.LevelError, "login over gRPC failed", slog.String("principal", username), slog.Any("err", err))
		return status.Error(codes.Internal, "internal error")
	}
}
