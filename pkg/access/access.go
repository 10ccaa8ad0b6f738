// Package access turns what a client presents (a Herald token, or a user name and password)
// into verified claims and the event filters those claims allow. Tokens are verified locally
// with the auth service's public key; only a password costs a round trip to auth, over NATS.
package access

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
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
	// Password is set when the client gave a user name and password: its token was issued for
	// this connection, so its expiry is not the client's to act on.
	Password bool
	// Token is the Herald token the session was verified from (issued by the login for a
	// password), for the APIs that hand it to the client.
	Token string
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
	return Session{Claims: c, Filters: f, Token: raw}, nil
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
	sess, err := a.Token(ctx, raw)
	sess.Password = true
	return sess, err
}

// Request reads Digital Rebar's credentials from r: the Authorization header (Bearer or
// Basic), else the token query parameter (also Token), where "user:password" is a login and
// anything else a Herald token. The DRP socket and the REST API both use it.
func (a *Authenticator) Request(r *http.Request) (Session, error) {
	ctx := r.Context()
	if hdr := r.Header.Get("Authorization"); hdr != "" {
		return a.Header(ctx, hdr)
	}
	q := r.URL.Query()
	tok := q.Get("token")
	if tok == "" {
		tok = q.Get("Token")
	}
	if tok == "" {
		return Session{}, fmt.Errorf("%w: no credentials: send an Authorization header or ?token=", ErrDenied)
	}
	if user, pass, ok := strings.Cut(tok, ":"); ok {
		return a.Password(ctx, user, pass)
	}
	return a.Token(ctx, tok)
}

// Header checks an Authorization header value: "Bearer <token>" or "Basic <base64 user:pw>".
func (a *Authenticator) Header(ctx context.Context, hdr string) (Session, error) {
	scheme, cred, _ := strings.Cut(hdr, " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return a.Token(ctx, cred)
	case strings.EqualFold(scheme, "Basic"):
		user, pass, ok := DecodeBasic(cred)
		if !ok {
			return Session{}, fmt.Errorf("%w: malformed Basic credentials", ErrDenied)
		}
		return a.Password(ctx, user, pass)
	default:
		return Session{}, fmt.Errorf("%w: unsupported Authorization scheme %q (use Bearer or Basic)", ErrDenied, scheme)
	}
}

// Watch calls end, at most once, when the session must end, with the close that says why:
// today when its token expires, measured from now (wsconn.DisconnectTokenExpired). It returns
// the function that cancels the watch. A session opened with a password never showed the
// client a token (drpcli with ?token=user:pass, Rancher's Basic), so its internal token's
// expiry does not end it: nothing is scheduled.
func (s Session) Watch(now time.Time, end func(wsconn.Disconnect)) (stop func()) {
	if s.Password || s.Claims.ExpiresAt.IsZero() {
		return func() {}
	}
	t := time.AfterFunc(s.Claims.ExpiresAt.Sub(now), func() { end(wsconn.DisconnectTokenExpired) })
	return func() { t.Stop() }
}

// Permitted reports whether the session may see e.
func (s Session) Permitted(e *event.Event) bool {
	for _, f := range s.Filters {
		if f.Matches(e) {
			return true
		}
	}
	return false
}

// DecodeBasic reads Basic credentials as user:password in any base64 alphabet: the standard
// one (RFC 7617, DRP) or the URL-safe one norman decodes with, padded or not.
func DecodeBasic(cred string) (user, pass string, ok bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		raw, err := enc.DecodeString(cred)
		if err != nil {
			continue
		}
		user, pass, ok = strings.Cut(string(raw), ":")
		return user, pass, ok && user != ""
	}
	return "", "", false
}
