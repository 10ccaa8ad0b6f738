package token

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks a raw token and returns its claims. Errors wrap one of
// ErrExpired, ErrSignature, ErrMalformed or ErrInvalid, and their text says
// why the token was refused.
type Verifier interface {
	Verify(ctx context.Context, raw string) (Claims, error)
}

// maxTokenBytes bounds the work done on hostile input; real tokens are a few
// hundred bytes plus the permissions.
const maxTokenBytes = 16 << 10

// keyVerifier verifies tokens locally against one Ed25519 public key.
type keyVerifier struct {
	pub    ed25519.PublicKey
	parser *jwt.Parser
}

// NewVerifier returns a Verifier that accepts only EdDSA tokens signed by the
// private key matching pub, issued by "herald", with an exp in the future
// (within the leeway, default and maximum 5s). It panics if pub is not 32
// bytes, a programming error caught at startup.
func NewVerifier(pub ed25519.PublicKey, opts ...Option) Verifier {
	if len(pub) != ed25519.PublicKeySize {
		panic(fmt.Sprintf("token: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize))
	}
	o := buildOptions(opts)
	return &keyVerifier{
		pub: pub,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{Algorithm}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuer(IssuerName),
			jwt.WithLeeway(o.leeway),
			jwt.WithTimeFunc(o.now),
			jwt.WithStrictDecoding(),
		),
	}
}

// Verify implements Verifier. It needs no I/O; ctx is accepted so that
// implementations consulting a revocation list can share the interface.
func (v *keyVerifier) Verify(_ context.Context, raw string) (Claims, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Claims{}, fmt.Errorf("%w: empty token", ErrMalformed)
	}
	if len(raw) > maxTokenBytes {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxTokenBytes)
	}
	var wc wireClaims
	_, err := v.parser.ParseWithClaims(raw, &wc, func(t *jwt.Token) (any, error) {
		// WithValidMethods already checked alg; this guards the key type too,
		// so an HMAC method can never be handed the public key as a secret.
		if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
			return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
		}
		return v.pub, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) && wc.ExpiresAt != nil {
			return Claims{}, fmt.Errorf("%w at %s", ErrExpired, wc.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return Claims{}, classify(err)
	}
	if wc.Subject == "" {
		return Claims{}, fmt.Errorf("%w: missing sub", ErrMalformed)
	}
	if wc.IssuedAt == nil {
		return Claims{}, fmt.Errorf("%w: missing iat", ErrMalformed)
	}
	c := Claims{
		Subject:     wc.Subject,
		Permissions: wc.Perms,
		IssuedAt:    wc.IssuedAt.UTC(),
		ExpiresAt:   wc.ExpiresAt.UTC(),
		ID:          wc.ID,
	}
	if c.Permissions == nil {
		c.Permissions = []string{}
	}
	return c, nil
}

// classify maps a jwt error onto this package's sentinels. Order matters:
// jwt checks the signature before the claims, so a forged expired token is
// reported as a signature error.
func classify(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: %s", ErrMalformed, detail(err, jwt.ErrTokenMalformed))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return fmt.Errorf("%w: %s", ErrSignature, detail(err, jwt.ErrTokenSignatureInvalid))
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: %s", ErrMalformed, detail(err, jwt.ErrTokenInvalidClaims))
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return fmt.Errorf("%w: %s", ErrInvalid, detail(err, jwt.ErrTokenInvalidClaims))
	default:
		return fmt.Errorf("%w: %s", ErrMalformed, err.Error())
	}
}

// detail strips jwt's own prefix (e.g. "token is malformed: ") so the
// message reads "token malformed: could not base64 decode header".
func detail(err, prefix error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, prefix.Error())
	msg = strings.TrimPrefix(msg, ": ")
	// Keep decode errors short: Go's JSON error names internal types.
	if i := strings.Index(msg, "could not JSON decode claim"); i >= 0 {
		msg = "could not JSON decode claims"
	}
	if msg == "" {
		return prefix.Error()
	}
	return msg
}
