package auth

import (
	"context"
	"errors"
	"log/slog"

	"github.com/heraldhq/herald/pkg/authwire"
)

// natsLogin adapts Login to the authwire reply shape.
func (s *Service) natsLogin(ctx context.Context, req authwire.LoginRequest) authwire.LoginReply {
	sess, err := s.LoginFrom(ctx, req.Username, req.Password, req.Address)
	switch {
	case err == nil:
		return authwire.LoginReply{
			Token:       sess.Token,
			ExpiresAt:   sess.Claims.ExpiresAt,
			User:        sess.Claims.Subject,
			Permissions: sess.Claims.Permissions,
		}
	case errors.Is(err, ErrInvalidRequest):
		return authwire.LoginError(authwire.CodeBadRequest, err.Error())
	case errors.Is(err, ErrBadCredentials), errors.Is(err, ErrTooManyAttempts):
		return authwire.LoginError(authwire.CodeUnauthorized, err.Error())
	default:
		s.log.LogAttrs(ctx, slog.LevelError, "login over NATS failed", slog.String("principal", req.Username), slog.Any("err", err))
		return authwire.LoginError(authwire.CodeInternal, "internal error")
	}
}

// natsVerifyAPIKey adapts VerifyAPIKey to the authwire reply shape.
func (s *Service) natsVerifyAPIKey(ctx context.Context, req authwire.APIKeyRequest) authwire.APIKeyReply {
	k, err := s.VerifyAPIKey(ctx, req.Key)
	switch {
	case err == nil:
		return authwire.APIKeyReply{KeyID: k.ID, ServerID: k.ServerID, Name: k.Name}
	case errors.Is(err, ErrInvalidAPIKey):
		return authwire.APIKeyError(authwire.CodeUnauthorized, err.Error())
	default:
		s.log.LogAttrs(ctx, slog.LevelError, "api key verification over NATS failed", slog.Any("err", err))
		return authwire.APIKeyError(authwire.CodeInternal, "internal error")
	}
}
