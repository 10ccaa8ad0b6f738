package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/pkg/token"
)

// Errors of Login, mapped to each transport's status (401, 400, 429).
var (
	// ErrBadCredentials means the user does not exist or the password is
	// wrong; the two are deliberately indistinguishable.
	ErrBadCredentials = errors.New("invalid username or password")
	// ErrInvalidRequest means a field is missing or too long.
	ErrInvalidRequest = errors.New("invalid login request")
	// ErrTooManyAttempts means the user name has too many recent failures.
	ErrTooManyAttempts = errors.New("too many failed login attempts")
)

// LimitError is returned (wrapping ErrTooManyAttempts) when the limiter
// refuses a login, with how long until the next attempt is allowed.
type LimitError struct{ RetryAfter time.Duration }

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: retry in %s", ErrTooManyAttempts, e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, ErrTooManyAttempts) hold.
func (e *LimitError) Unwrap() error { return ErrTooManyAttempts }

// Session is a successful login: the raw token and what it says.
type Session struct {
	Token  string
	Claims token.Claims
}

// Login checks username and password and issues a token carrying the user's
// permissions. Errors wrap ErrInvalidRequest, ErrBadCredentials or
// ErrTooManyAttempts; anything else is internal.
func (s *Service) Login(ctx context.Context, username, password string) (Session, error) {
	return s.LoginFrom(ctx, username, password, "")
}

// LoginFrom is Login from a client at address (a host, "" when unknown), which failed logins
// are limited by. The password check waits for one of the service's bcrypt workers (as many
// as cores); a caller that gives up while waiting costs no hashing.
func (s *Service) LoginFrom(ctx context.Context, username, password, address string) (_ Session, err error) {
	defer observeLogin(&err)
	switch {
	case username == "":
		return Session{}, fmt.Errorf("%w: username: must not be empty", ErrInvalidRequest)
	case password == "":
		return Session{}, fmt.Errorf("%w: password: must not be empty", ErrInvalidRequest)
	case len(username) > maxUsernameBytes:
		return Session{}, fmt.Errorf("%w: username: longer than %d bytes", ErrInvalidRequest, maxUsernameBytes)
	}
	if ok, wait, byAddress := s.limiter.allow(username, address); !ok {
		scope := "user and address"
		if byAddress {
			scope = "address"
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "login refused: too many failures", slog.String("principal", username),
			slog.String("address", address), slog.String("limit", scope), slog.Duration("retry_after", wait))
		return Session{}, &LimitError{RetryAfter: wait}
	}
	u, err := s.store.GetUser(ctx, username)
	switch {
	case errors.Is(err, ErrUserNotFound):
		u = User{} // Checked against the dummy hash: same cost as a wrong password.
	case err != nil:
		return Session{}, fmt.Errorf("login %q: %w", username, err)
	}
	ok, err := s.hasher.checkPooled(ctx, u.PasswordHash, password)
	if err != nil {
		return Session{}, fmt.Errorf("login %q: %w", username, err)
	}
	if !ok {
		why := "wrong password"
		if u.Name == "" {
			why = "unknown user"
		}
		return Session{}, s.failed(ctx, username, address, why)
	}
	s.limiter.succeed(username, address)
	raw, claims, err := s.keys.Issuer().IssueNotBefore(u.Name, u.Permissions, s.revocations.UserRevokedBefore(u.Name))
	if err != nil {
		return Session{}, fmt.Errorf("login %q: %w", username, err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "login", slog.String("principal", u.Name), slog.String("jti", claims.ID))
	return Session{Token: raw, Claims: claims}, nil
}

// failed records and logs a failed login; why stays in the log, the client
// only learns ErrBadCredentials.
func (s *Service) failed(ctx context.Context, username, address, why string) error {
	s.limiter.fail(username, address)
	s.log.LogAttrs(ctx, slog.LevelInfo, "login failed", slog.String("principal", username), slog.String("address", address), slog.String("reason", why))
	return ErrBadCredentials
}

// LoginLimits returns how many logins the failure limiter refused since start.
func (s *Service) LoginLimits() LimitStats { return s.limiter.stats() }
