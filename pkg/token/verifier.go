package token

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// KeySet verifies tokens locally against the signing keys it holds, chosen by the token's
// "kid": the auth service publishes its current and previous public keys, and a KeySet fed
// with them accepts tokens of either across a rotation. Until it holds a key it refuses every
// token with ErrNoKey. It is safe for concurrent use; SetKeys may be called at any time.
type KeySet struct {
	parser *jwt.Parser
	rev    *Revocations

	mu   sync.RWMutex
	keys map[string]ed25519.PublicKey // by KeyID; mu guards keys
}

// NewKeySet returns an empty KeySet that accepts only EdDSA tokens issued by "herald", with an
// exp in the future (within the leeway, default and maximum 5s), and, with WithRevocations,
// not revoked.
func NewKeySet(opts ...Option) *KeySet {
	o := buildOptions(opts)
	return &KeySet{
		rev: o.rev,
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

// NewVerifier returns a Verifier holding the one key pub (see NewKeySet). It panics if pub is
// not 32 bytes, a programming error caught at startup.
func NewVerifier(pub ed25519.PublicKey, opts ...Option) Verifier {
	if len(pub) != ed25519.PublicKeySize {
		panic(fmt.Sprintf("token: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize))
	}
	ks := NewKeySet(opts...)
	ks.SetKeys(pub)
	return ks
}

// SetKeys replaces the keys the set verifies with; keys of the wrong size are skipped.
func (k *KeySet) SetKeys(pubs ...ed25519.PublicKey) {
	keys := make(map[string]ed25519.PublicKey, len(pubs))
	for _, p := range pubs {
		if len(p) == ed25519.PublicKeySize {
			keys[KeyID(p)] = p
		}
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
}

// Known reports whether the set holds at least one key, so it can verify anything at all.
func (k *KeySet) Known() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.keys) > 0
}

// Revocations returns the list the set refuses tokens from, nil without WithRevocations.
func (k *KeySet) Revocations() *Revocations { return k.rev }

// keyFor picks the key for t: the one its kid names, or, for a token without kid (issued
// before keys had ids), any key held.
func (k *KeySet) keyFor(t *jwt.Token) (any, error) {
	// WithValidMethods already checked alg; this guards the key type too, so an HMAC method
	// can never be handed the public key as a secret.
	if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
		return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if len(k.keys) == 0 {
		return nil, ErrNoKey
	}
	if kid, ok := t.Header["kid"].(string); ok {
		pub, ok := k.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown signing key %q", kid)
		}
		return pub, nil
	}
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, 0, len(k.keys))}
	for _, pub := range k.keys {
		set.Keys = append(set.Keys, pub)
	}
	return set, nil
}

// Verify implements Verifier. It needs no I/O.
func (k *KeySet) Verify(_ context.Context, raw string) (Claims, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Claims{}, fmt.Errorf("%w: empty token", ErrMalformed)
	}
	if len(raw) > maxTokenBytes {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxTokenBytes)
	}
	var wc wireClaims
	_, err := k.parser.ParseWithClaims(raw, &wc, k.keyFor)
	if err != nil {
		if errors.Is(err, ErrNoKey) {
			return Claims{}, ErrNoKey
		}
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
	if err := k.rev.Check(c); err != nil {
		return Claims{}, err
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
