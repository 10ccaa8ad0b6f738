package auth

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/grpcauth"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// rotateKeys is the permission RotateSigningKey needs: a literal "*" key, as for API keys.
var rotateKeys = event.Event{Type: "signingkeys", Action: "rotate", Key: "*"}

// RotateSigningKey implements heraldv1.AuthServiceServer.
func (g grpcServer) RotateSigningKey(ctx context.Context, _ *heraldv1.RotateSigningKeyRequest) (*heraldv1.RotateSigningKeyResponse, error) {
	ctx, err := g.authorize(ctx, &rotateKeys)
	if err != nil {
		return nil, err
	}
	kid, err := g.s.RotateSigningKey(ctx)
	if err != nil {
		return nil, g.internal(ctx, "rotate signing key", err)
	}
	return &heraldv1.RotateSigningKeyResponse{Kid: kid}, nil
}

// RevokeToken implements heraldv1.AuthServiceServer. A caller may always revoke a token of
// its own (logging out); anyone else's needs tokens.revoke.<user>.
func (g grpcServer) RevokeToken(ctx context.Context, req *heraldv1.RevokeTokenRequest) (*heraldv1.RevokeTokenResponse, error) {
	jti, user := req.GetJti(), req.GetUser()
	expires := g.s.now().Add(g.s.cfg.TokenTTL)
	if raw := req.GetToken(); raw != "" {
		c, err := g.s.verifier.Verify(ctx, raw)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		jti, user, expires = c.ID, c.Subject, c.ExpiresAt
	}
	if jti == "" || user == "" {
		return nil, status.Error(codes.InvalidArgument, "token, or jti and user, must be set")
	}
	ctx, err := g.authorizeUser(ctx, "tokens", "revoke", user)
	if err != nil {
		return nil, err
	}
	if err := g.s.RevokeToken(ctx, jti, user, expires); err != nil {
		return nil, g.internal(ctx, "revoke token", err)
	}
	return &heraldv1.RevokeTokenResponse{}, nil
}

// RevokeUser implements heraldv1.AuthServiceServer.
func (g grpcServer) RevokeUser(ctx context.Context, req *heraldv1.RevokeUserRequest) (*heraldv1.RevokeUserResponse, error) {
	if req.GetUser() == "" {
		return nil, status.Error(codes.InvalidArgument, "user: must not be empty")
	}
	ctx, err := g.authorize(ctx, &event.Event{Type: "users", Action: "revoke", Key: req.GetUser()})
	if err != nil {
		return nil, err
	}
	if err := g.s.RevokeUser(ctx, req.GetUser()); err != nil {
		return nil, g.internal(ctx, "revoke user", err)
	}
	return &heraldv1.RevokeUserResponse{}, nil
}

// ChangePassword implements heraldv1.AuthServiceServer: an administrator (users.manage.<user>)
// sets any password; a user changes their own with the old one.
func (g grpcServer) ChangePassword(ctx context.Context, req *heraldv1.ChangePasswordRequest) (*heraldv1.ChangePasswordResponse, error) {
	user := req.GetUser()
	if user == "" {
		return nil, status.Error(codes.InvalidArgument, "user: must not be empty")
	}
	actx, err := g.authorize(ctx, &event.Event{Type: "users", Action: "manage", Key: user})
	if status.Code(err) == codes.PermissionDenied && g.caller(ctx) == user {
		if _, lerr := g.s.LoginFrom(ctx, user, req.GetOldPassword(), grpcPeerHost(ctx)); lerr != nil {
			return nil, g.loginStatus(ctx, user, lerr)
		}
		actx, err = withPrincipal(ctx, user), nil
	}
	if err != nil {
		return nil, err
	}
	switch err := g.s.ChangePassword(actx, user, req.GetNewPassword()); {
	case err == nil:
		return &heraldv1.ChangePasswordResponse{}, nil
	case errors.Is(err, ErrInvalidArgument):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrUserNotFound):
		return nil, status.Error(codes.NotFound, "user not found")
	default:
		return nil, g.internal(actx, "change password", err)
	}
}

// authorizeUser lets the caller act on its own tokens, and needs typ.action.<user> otherwise.
func (g grpcServer) authorizeUser(ctx context.Context, typ, action, user string) (context.Context, error) {
	if g.caller(ctx) == user {
		return withPrincipal(ctx, user), nil
	}
	return g.authorize(ctx, &event.Event{Type: typ, Action: action, Key: user})
}

// caller is the subject of the caller's valid token, "" without one.
func (g grpcServer) caller(ctx context.Context) string {
	raw, err := grpcauth.IncomingToken(ctx)
	if err != nil {
		return ""
	}
	c, err := g.s.verifier.Verify(ctx, raw)
	if err != nil {
		return ""
	}
	return c.Subject
}

// internal logs err and returns the status that hides it.
func (g grpcServer) internal(ctx context.Context, op string, err error) error {
	g.s.log.LogAttrs(ctx, slog.LevelError, op+" failed", slog.String("principal", principalFrom(ctx)), slog.Any("err", err))
	return status.Error(codes.Internal, "internal error")
}
