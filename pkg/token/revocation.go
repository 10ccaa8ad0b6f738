package token

import (
	"fmt"
	"sync"
	"time"
)

// maxRevokedTokens bounds the list of revoked jtis; past it, entries whose token has expired
// anyway are dropped first, and a full list of live ones refuses nothing new rather than grow.
// Revoking every token of a user takes one entry however many tokens it had.
const maxRevokedTokens = 100_000

// Revocations lists revoked tokens and users, and tells watchers of a subject when something of
// theirs is revoked, so a live connection can close at once. The zero value is not usable;
// a nil *Revocations revokes nothing. It is safe for concurrent use.
type Revocations struct {
	now func() time.Time

	mu       sync.Mutex
	tokens   map[string]revokedToken                  // by jti
	users    map[string]time.Time                     // subject -> tokens issued before are revoked
	watchers map[string]map[*revocationWatch]struct{} // by subject
}

type revokedToken struct {
	subject string
	expires time.Time
}

// revocationWatch is one Watch; not zero-sized, so every one has an address of its own.
type revocationWatch struct{ changed func() }

// NewRevocations returns an empty list.
func NewRevocations(opts ...Option) *Revocations {
	o := buildOptions(opts)
	return &Revocations{
		now:      o.now,
		tokens:   make(map[string]revokedToken),
		users:    make(map[string]time.Time),
		watchers: make(map[string]map[*revocationWatch]struct{}),
	}
}

// RevokeToken revokes the token with jti id, issued to subject and expiring at expires (after
// which the entry is no longer needed), and tells subject's watchers.
func (r *Revocations) RevokeToken(id, subject string, expires time.Time) {
	if id == "" {
		return
	}
	r.mu.Lock()
	if _, ok := r.tokens[id]; !ok && len(r.tokens) >= maxRevokedTokens {
		now := r.now()
		for jti, t := range r.tokens {
			if now.After(t.expires.Add(DefaultLeeway)) {
				delete(r.tokens, jti)
			}
		}
	}
	if len(r.tokens) < maxRevokedTokens {
		r.tokens[id] = revokedToken{subject: subject, expires: expires}
	}
	r.mu.Unlock()
	r.notify(subject)
}

// RevokeUser revokes every token of subject issued before before (a password change, or
// RevokeUser). Tokens carry iat in whole seconds, so before is rounded up to one: a token
// issued in the same second as the revocation is refused too, which is why the issuer must
// give later logins an iat of at least that second (Issuer.IssueNotBefore). An earlier time
// than one already recorded changes nothing.
func (r *Revocations) RevokeUser(subject string, before time.Time) {
	before = CeilSecond(before)
	r.mu.Lock()
	if cur, ok := r.users[subject]; ok && !before.After(cur) {
		r.mu.Unlock()
		return
	}
	r.users[subject] = before
	r.mu.Unlock()
	r.notify(subject)
}

// UserRevokedBefore returns the time before which subject's tokens are revoked, zero if none.
func (r *Revocations) UserRevokedBefore(subject string) time.Time {
	if r == nil {
		return time.Time{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.users[subject]
}

// CeilSecond rounds t up to a whole second, the precision of a token's iat.
func CeilSecond(t time.Time) time.Time {
	if f := t.Truncate(time.Second); !f.Equal(t) {
		return f.Add(time.Second)
	}
	return t
}

// Check returns an error wrapping ErrRevoked if c is revoked, nil otherwise.
func (r *Revocations) Check(c Claims) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.tokens[c.ID]; ok && c.ID != "" {
		return fmt.Errorf("%w: token %s was revoked", ErrRevoked, c.ID)
	}
	if before, ok := r.users[c.Subject]; ok && c.IssuedAt.Before(before) {
		return fmt.Errorf("%w: every token of %q issued before %s was revoked", ErrRevoked, c.Subject, before.UTC().Format(time.RFC3339))
	}
	return nil
}

// Watch calls changed, in a goroutine of its own, each time a token of subject or subject
// itself is revoked, until stop is called. The callback checks what it holds with Check.
func (r *Revocations) Watch(subject string, changed func()) (stop func()) {
	if r == nil {
		return func() {}
	}
	w := &revocationWatch{changed: changed}
	r.mu.Lock()
	ws := r.watchers[subject]
	if ws == nil {
		ws = make(map[*revocationWatch]struct{})
		r.watchers[subject] = ws
	}
	ws[w] = struct{}{}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if ws := r.watchers[subject]; ws != nil {
			delete(ws, w)
			if len(ws) == 0 {
				delete(r.watchers, subject)
			}
		}
	}
}

func (r *Revocations) notify(subject string) {
	r.mu.Lock()
	fns := make([]func(), 0, len(r.watchers[subject]))
	for w := range r.watchers[subject] {
		fns = append(fns, w.changed)
	}
	r.mu.Unlock()
	for _, fn := range fns {
		go fn()
	}
}
