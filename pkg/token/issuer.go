package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// wireClaims is the JWT payload: the registered claims plus "perms".
type wireClaims struct {
	Perms []string `json:"perms"`
	jwt.RegisteredClaims
}

// Issuer signs tokens. It is safe for concurrent use.
type Issuer struct {
	priv ed25519.PrivateKey
	kid  string
	ttl  time.Duration
	now  func() time.Time
}

// NewIssuer returns an Issuer signing with priv; tokens live for ttl.
// It panics if priv is not a valid Ed25519 private key or ttl <= 0, which
// are programming errors caught at startup.
func NewIssuer(priv ed25519.PrivateKey, ttl time.Duration, opts ...Option) *Issuer {
	if len(priv) != ed25519.PrivateKeySize {
		panic(fmt.Sprintf("token: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize))
	}
	if ttl <= 0 {
		panic("token: ttl must be positive")
	}
	o := buildOptions(opts)
	return &Issuer{priv: priv, kid: KeyID(priv.Public().(ed25519.PublicKey)), ttl: ttl, now: o.now}
}

// PublicKey returns the key that verifies this Issuer's tokens.
func (is *Issuer) PublicKey() ed25519.PublicKey {
	return is.priv.Public().(ed25519.PublicKey)
}

// KeyID returns the kid of this Issuer's tokens.
func (is *Issuer) KeyID() string { return is.kid }

// TTL returns how long issued tokens live.
func (is *Issuer) TTL() time.Duration { return is.ttl }

// Issue signs a token for subject with perms and returns it with its claims.
// Times are truncated to whole seconds, as JWT NumericDate carries them, so
// the returned Claims equal what Verify will return.
func (is *Issuer) Issue(subject string, perms []string) (string, Claims, error) {
	return is.IssueNotBefore(subject, perms, time.Time{})
}

// IssueNotBefore is Issue with iat (and nbf) no earlier than notBefore, a whole second. A
// user revocation refuses tokens issued before a whole second (see Revocations.RevokeUser);
// a login in the rest of that second must get a token it does not refuse.
func (is *Issuer) IssueNotBefore(subject string, perms []string, notBefore time.Time) (string, Claims, error) {
	if subject == "" {
		return "", Claims{}, fmt.Errorf("issue token: empty subject")
	}
	var idBytes [16]byte
	if _, err := rand.Read(idBytes[:]); err != nil {
		return "", Claims{}, fmt.Errorf("issue token: jti: %w", err)
	}
	now := is.now().UTC().Truncate(time.Second)
	if notBefore.After(now) {
		now = notBefore.UTC().Truncate(time.Second)
	}
	c := Claims{
		Subject:     subject,
		Permissions: slices.Clone(perms),
		IssuedAt:    now,
		ExpiresAt:   now.Add(is.ttl).Truncate(time.Second),
		ID:          base64.RawURLEncoding.EncodeToString(idBytes[:]),
	}
	if c.Permissions == nil {
		c.Permissions = []string{}
	}
	wc := wireClaims{
		Perms: c.Permissions,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    IssuerName,
			Subject:   c.Subject,
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			NotBefore: jwt.NewNumericDate(c.IssuedAt),
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
			ID:        c.ID,
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, wc)
	t.Header["kid"] = is.kid
	raw, err := t.SignedString(is.priv)
	if err != nil {
		return "", Claims{}, fmt.Errorf("issue token: sign: %w", err)
	}
	return raw, c, nil
}
