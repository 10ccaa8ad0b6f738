// Package token issues and verifies Herald access tokens: JWTs signed with
// Ed25519 (alg "EdDSA"). The auth service holds the private key and an
// [Issuer]; edges hold only the public key and a [Verifier], so checking a
// token on connect never calls the auth service.
//
// A token carries the subject (user name), its permissions as
// "type.action.key" filters (claim "perms"), iat, nbf (= iat), exp, a random
// jti and iss "herald"; its header names the signing key ("kid", see [KeyID]), so a
// [KeySet] can hold the current and the previous key across a rotation.
//
// [Revocations] is the list of revoked tokens (by jti) and users (every token issued before a
// time); a KeySet made WithRevocations refuses what it lists.
package token

import (
	"errors"
	"time"
)

// Sentinel errors returned (wrapped, with the detail) by [Verifier.Verify].
// Their text is meant to be shown to a client, e.g. in a 401 body.
var (
	// ErrExpired means the token's exp is in the past (beyond the leeway).
	ErrExpired = errors.New("token expired")
	// ErrSignature means the signature does not verify with the verifier's key
	// (signed by another key, tampered with) or the algorithm is not EdDSA.
	ErrSignature = errors.New("token signature invalid")
	// ErrMalformed means the string is not a well-formed Herald token: wrong
	// number of segments, bad base64 or JSON, or a required claim missing.
	ErrMalformed = errors.New("token malformed")
	// ErrInvalid means a correctly signed token whose claims are unacceptable
	// (wrong issuer, not valid yet).
	ErrInvalid = errors.New("token invalid")
	// ErrRevoked means a correctly signed, unexpired token that was revoked: by its jti, or
	// because every token of its subject issued before some time was (a password change).
	ErrRevoked = errors.New("token revoked")
	// ErrNoKey means the verifier knows no signing key yet (auth has not published one), so it
	// cannot tell good tokens from bad: the caller should answer "unavailable", not "denied".
	ErrNoKey = errors.New("no token signing key known yet")
)

// IssuerName is the iss claim of every Herald token; Verify refuses others.
const IssuerName = "herald"

// Algorithm is the only JWT alg Herald signs with and accepts.
const Algorithm = "EdDSA"

// DefaultLeeway is the clock skew tolerated on exp and nbf by default.
const DefaultLeeway = 5 * time.Second

// Claims is what a verified token says about its holder.
type Claims struct {
	// Subject is the user (or API key) name the token was issued to.
	Subject string
	// Permissions are "type.action.key" filters (see event.ParsePermissions).
	Permissions []string
	IssuedAt    time.Time
	ExpiresAt   time.Time
	// ID is the unique token id (jti), for logs and revocation.
	ID string
}

// Option configures an [Issuer] or a verifier.
type Option func(*options)

type options struct {
	now    func() time.Time
	leeway time.Duration
	rev    *Revocations
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now, leeway: DefaultLeeway}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithClock replaces time.Now, so tests can issue tokens in the past or
// verify them in the future.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithLeeway sets the clock skew tolerated on exp and nbf when verifying.
// It is clamped to [0, DefaultLeeway]: a long leeway would quietly extend
// every token's life.
func WithLeeway(d time.Duration) Option {
	return func(o *options) {
		o.leeway = min(max(d, 0), DefaultLeeway)
	}
}

// WithRevocations makes a verifier refuse the tokens r lists (with ErrRevoked).
func WithRevocations(r *Revocations) Option {
	return func(o *options) { o.rev = r }
}
