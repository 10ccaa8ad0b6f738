package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/token"
)

// revocationGrace keeps a revocation entry past the longest life of a token it can cover, so
// clocks a little apart do not resurrect one.
const revocationGrace = time.Minute

// RevokeToken revokes one token, by jti, of user; it expires at expires (zero: at the latest
// a token issued now would). Every verifier refuses it from then on, and live connections
// using it close.
func (s *Service) RevokeToken(ctx context.Context, jti, user string, expires time.Time) error {
	if jti == "" || user == "" {
		return fmt.Errorf("%w: jti and user must be set", ErrInvalidArgument)
	}
	if expires.IsZero() {
		expires = s.now().Add(s.cfg.TokenTTL)
	}
	if err := s.putRevocation(ctx, authwire.RevokedTokenKey(jti), authwire.RevokedToken{Subject: user, ExpiresAt: expires.UTC()}); err != nil {
		return err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "token revoked", slog.String("principal", principalFrom(ctx)), slog.String("user", user), slog.String("jti", jti))
	return nil
}

// RevokeUser revokes every token of user issued until now, including the ones edges hold for
// sockets opened with the user's password.
func (s *Service) RevokeUser(ctx context.Context, user string) error {
	if user == "" {
		return fmt.Errorf("%w: user must be set", ErrInvalidArgument)
	}
	if err := s.putRevocation(ctx, authwire.RevokedUserKey(user), authwire.RevokedUser{Subject: user, Before: s.now().UTC()}); err != nil {
		return err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "every token of user revoked", slog.String("principal", principalFrom(ctx)), slog.String("user", user))
	return nil
}

// ChangePassword sets user's password and revokes every session opened before, so the old
// password stops working everywhere at once, sockets included.
func (s *Service) ChangePassword(ctx context.Context, user, password string) error {
	if password == "" || len(password) > maxPasswordBytes {
		return fmt.Errorf("%w: password must be 1 to %d bytes", ErrInvalidArgument, maxPasswordBytes)
	}
	u, err := s.store.GetUser(ctx, user)
	if err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	if u.PasswordHash, err = s.hasher.hash(password); err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	if err := s.store.PutUser(ctx, u); err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	return s.RevokeUser(ctx, user)
}

// putRevocation applies a revocation here at once (this instance's REST and gRPC refuse it
// without waiting for the watch) and stores it for every other verifier.
func (s *Service) putRevocation(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if err := authwire.ApplyRevocation(s.revocations, key, data); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if s.revocationsKV == nil {
		return nil
	}
	if _, err := s.revocationsKV.Put(ctx, key, data); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// openRevocations makes (or binds) the revocations bucket. Its entries expire once every token
// they can cover has.
func openRevocations(ctx context.Context, js jetstream.JetStream, cfg KVConfig, tokenTTL time.Duration) (jetstream.KeyValue, error) {
	return cfg.bucket(ctx, js, subject.AuthRevocationsBucket, tokenTTL+token.DefaultLeeway+revocationGrace)
}
