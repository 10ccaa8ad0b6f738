package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/crypto/bcrypt"
)

// maxPasswordBytes is bcrypt's input limit; longer passwords are refused
// rather than silently truncated.
const maxPasswordBytes = 72

// hasher hashes and checks passwords with bcrypt at a fixed cost.
type hasher struct {
	cost int
	// workers bounds the password checks running at once to the cores: more would only
	// share them, and a check whose caller gave up while it waited is never started.
	workers chan struct{}
	// dummy is compared against for unknown users, so a login for a name
	// that does not exist costs as much as one with a wrong password and
	// response times do not reveal which users exist.
	dummy []byte
}

func newHasher(cost int) (*hasher, error) {
	h := &hasher{cost: cost, workers: make(chan struct{}, runtime.GOMAXPROCS(0))}
	dummy, err := h.hash(rand.Text())
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

func (h *hasher) hash(password string) ([]byte, error) {
	if len(password) > maxPasswordBytes {
		return nil, fmt.Errorf("password longer than %d bytes", maxPasswordBytes)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), h.cost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return hash, nil
}

// check reports whether password matches hash; a nil hash is checked
// against the dummy and never matches.
func (h *hasher) check(hash []byte, password string) bool {
	if hash == nil {
		_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// checkPooled is check on one of the workers; it returns ctx's error if ctx ends before a
// worker is free. Passwords longer than bcrypt takes never match.
func (h *hasher) checkPooled(ctx context.Context, hash []byte, password string) (bool, error) {
	select {
	case h.workers <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("password check dropped: %w", context.Cause(ctx))
	}
	defer func() { <-h.workers }()
	if ctx.Err() != nil {
		return false, fmt.Errorf("password check dropped: %w", context.Cause(ctx))
	}
	if len(password) > maxPasswordBytes {
		hash = nil // Refused, at the cost of a check like any wrong password.
	}
	return h.check(hash, password), nil
}

// checkHash reports whether hash is a well-formed bcrypt hash.
func checkHash(hash []byte) error {
	if _, err := bcrypt.Cost(hash); err != nil {
		return errors.New("password_hash: not a bcrypt hash")
	}
	return nil
}

// generatePassword returns a random password with 130 bits of entropy
// (26 base32 characters).
func generatePassword() string {
	return rand.Text()
}
