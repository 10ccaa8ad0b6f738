// Package access turns what a client presents (a Herald token, or a user name and password)
// into verified claims and the event filters those claims allow. Tokens are verified locally
// with the auth service's published keys; only a password costs a round trip to auth, over
// NATS, and a successful one is remembered briefly (passwordCacheTTL), so a reconnect storm of
// one user's sockets costs auth one password check. Concurrent logins with the same
// credentials share one request.
//
// A Session is watched for as long as a connection lives (Session.Watch): it ends when the
// token expires or is revoked (by jti, every token of the user, a password change), and a
// client may replace its token in-band with Session.Refresh.
package access

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
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

	auth *Authenticator // for Refresh and the revocations Watch follows; nil in tests
}

// Principal is the DRP-style principal string, "user:<name>".
func (s Session) Principal() string { return "user:" + s.Claims.Subject }

// Authenticator checks credentials.
type Authenticator struct {
	verifier token.Verifier
	rev      *token.Revocations // what Watch follows; nil: revocations end no session
	nc       *nats.Conn         // for password logins; nil disables them
	logins   *loginCache
}

// revocationSource is a verifier that refuses revoked tokens (token.KeySet) and can say so.
type revocationSource interface {
	Revocations() *token.Revocations
}

// New returns an Authenticator. nc may be nil, in which case user:password is refused. When v
// refuses revoked tokens (a token.KeySet made WithRevocations, as authwire.Trust's is), live
// sessions end on revocation too.
func New(v token.Verifier, nc *nats.Conn) *Authenticator {
	a := &Authenticator{verifier: v, nc: nc, logins: newLoginCache()}
	if rs, ok := v.(revocationSource); ok {
		a.rev = rs.Revocations()
	}
	return a
}

// Token verifies a Herald token.
func (a *Authenticator) Token(ctx context.Context, raw string) (Session, error) {
	c, err := a.verifier.Verify(ctx, raw)
	switch {
	case errors.Is(err, token.ErrNoKey):
		return Session{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case err != nil:
		return Session{}, fmt.Errorf("%w: %w", ErrDenied, err)
	}
	f, err := event.ParsePermissions(c.Permissions)
	if err != nil {
		return Session{}, fmt.Errorf("%w: token carries a bad %w", ErrDenied, err)
	}
	return Session{Claims: c, Filters: f, Token: raw, auth: a}, nil
}

// Password logs in through the auth service and verifies the token it returns. A token got
// for the same credentials in the last passwordCacheTTL is used again instead, unless it has
// been revoked since (a password change revokes it).
func (a *Authenticator) Password(ctx context.Context, user, password string) (Session, error) {
	if a.nc == nil {
		return Session{}, fmt.Errorf("%w: password login is not enabled on this edge", ErrUnavailable)
	}
	raw, err := a.logins.login(ctx, user, password, func(ctx context.Context) (string, error) {
		return authwire.Login(ctx, a.nc, user, password, clientAddress(ctx))
	}, func(raw string) bool {
		_, err := a.verifier.Verify(ctx, raw)
		return err == nil
	})
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

type clientAddressKey struct{}

// WithClientAddress returns ctx carrying the client's address (a RemoteAddr, host:port or a
// host), which a password login passes to auth so failed logins are limited per source.
// Request does this itself; a dialect calling Header or Password directly should too.
func WithClientAddress(ctx context.Context, remoteAddr string) context.Context {
	return context.WithValue(ctx, clientAddressKey{}, ClientHost(remoteAddr))
}

func clientAddress(ctx context.Context) string {
	s, _ := ctx.Value(clientAddressKey{}).(string)
	return s
}

// ClientHost is the host part of a RemoteAddr (host:port), or addr itself when it has no port.
func ClientHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// Request reads Digital Rebar's credentials from r: the Authorization header (Bearer or
// Basic), else the token query parameter (also Token), where "user:password" is a login and
// anything else a Herald token. The DRP socket and the REST API both use it.
func (a *Authenticator) Request(r *http.Request) (Session, error) {
	ctx := WithClientAddress(r.Context(), r.RemoteAddr)
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

// DisconnectRevoked closes a connection whose token (or user, or password) was revoked.
var DisconnectRevoked = wsconn.DisconnectTokenExpired.WithReason("token revoked")

// Watch calls end, at most once, when the session must end, with the close that says why:
// when its token expires, measured from now (wsconn.DisconnectTokenExpired), or as soon as
// it is revoked on any auth instance (DisconnectRevoked). It returns the function that
// cancels the watch; to re-arm it after Refresh, stop the old watch and Watch the new session.
// A session opened with a password never showed the client a token (drpcli with
// ?token=user:pass, Rancher's Basic), so its internal token's expiry does not end it; a
// password change does, since it revokes every token of the user issued before.
func (s Session) Watch(now time.Time, end func(wsconn.Disconnect)) (stop func()) {
	var once sync.Once
	fire := func(d wsconn.Disconnect) { once.Do(func() { end(d) }) }
	stops := make([]func(), 0, 2)
	if !s.Password && !s.Claims.ExpiresAt.IsZero() {
		t := time.AfterFunc(s.Claims.ExpiresAt.Sub(now), func() { fire(wsconn.DisconnectTokenExpired) })
		stops = append(stops, func() { t.Stop() })
	}
	if s.auth != nil && s.auth.rev != nil {
		rev, claims := s.auth.rev, s.Claims
		stops = append(stops, rev.Watch(claims.Subject, func() {
			if rev.Check(claims) != nil {
				fire(DisconnectRevoked)
			}
		}))
		// A revocation that arrived between the check that opened the session and now.
		if rev.Check(claims) != nil {
			fire(DisconnectRevoked)
		}
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// Refresh checks raw, a new token the client sent over its open connection (DRP's
// `token <jwt>`, a monitoring socket's auth message), and returns the session it opens. It
// must name the same principal: a connection never changes hands. The caller stops the old
// session's watch and watches the new one.
func (s Session) Refresh(ctx context.Context, raw string) (Session, error) {
	if s.auth == nil {
		return Session{}, fmt.Errorf("%w: this session cannot be refreshed", ErrDenied)
	}
	next, err := s.auth.Token(ctx, raw)
	if err != nil {
		return Session{}, err
	}
	if next.Claims.Subject != s.Claims.Subject {
		return Session{}, fmt.Errorf("%w: the new token is for %q, this connection for %q", ErrDenied, next.Claims.Subject, s.Claims.Subject)
	}
	return next, nil
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
