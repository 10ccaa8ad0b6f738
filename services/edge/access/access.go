// Package access turns what a client presents (a Herald token, or a user name and password)
// into verified claims and the event filters those claims allow. Tokens are verified locally
// with the auth service's public key; only a password costs a round trip to auth, over NATS.
package access

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/token"
)

// ErrDenied means the credentials are wrong, expired or signed by someone else; the wrapped
// message says which, and is safe to show the client.
var ErrDenied = errors.New("access denied")

// ErrUnavailable means the credentials could not be checked now (auth unreachable).
var ErrUnavailable = errors.New("authentication unavailable")

// Session is an authenticated principal.
type Session struct {
	Claims  token.Claims
	Filters []event.Filter // what the principal may see, parsed from Claims.Permissions
}

// Principal is the DRP-style principal string, "user:<name>".
func (s Session) Principal() string { return "user:" + s.Claims.Subject }

// Authenticator checks credentials.
type Authenticator struct {
	verifier token.Verifier
	nc       *nats.Conn // for password logins; nil disables them
}

// New returns an Authenticator. nc may be nil, in which case user:password is refused.
func New(v token.Verifier, nc *nats.Conn) *Authenticator {
	return &Authenticator{verifier: v, nc: nc}
}

// Token verifies a Herald token.
func (a *Authenticator) Token(ctx context.Context, raw string) (Session, error) {
	c, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return Session{}, fmt.Errorf("%w: %w", ErrDenied, err)
	}
	f, err := event.ParsePermissions(c.Permissions)
	if err != nil {
		return Session{}, fmt.Errorf("%w: token carries a bad %w", ErrDenied, err)
	}
	return Session{Claims: c, Filters: f}, nil
}

// Password logs in through the auth service and verifies the token it returns.
func (a *Authenticator) Password(ctx context.Context, user, password string) (Session, error) {
	if a.nc == nil {
		return Session{}, fmt.Errorf("%w: password login is not enabled on this edge", ErrUnavailable)
	}
	raw, err := authwire.Login(ctx, a.nc, user, password)
	switch {
	case errors.Is(err, authwire.ErrUnauthorized), errors.Is(err, authwire.ErrBadRequest):
		return Session{}, fmt.Errorf("%w: %w", ErrDenied, err)
	case err != nil:
		return Session{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return a.Token(ctx, raw)
}
