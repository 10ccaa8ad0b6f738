package auth

import (
	"context"
	"errors"
)

// ErrUserNotFound is returned by Store.GetUser for an unknown name.
var ErrUserNotFound = errors.New("user not found")

// User is an account that can log in.
type User struct {
	// Name is the login name and the token subject.
	Name string
	// PasswordHash is a bcrypt hash; the password itself is never stored.
	PasswordHash []byte
	// Permissions are "type.action.key" filters granted to the user's tokens.
	Permissions []string
}

// Store keeps users (API keys come later). Implementations are safe for
// concurrent use and return copies, so callers may keep what they get.
// authtest.RunStore is the contract every implementation passes.
type Store interface {
	// GetUser returns the user called name, or an error wrapping
	// ErrUserNotFound.
	GetUser(ctx context.Context, name string) (User, error)
	// PutUser creates or replaces the user called u.Name.
	PutUser(ctx context.Context, u User) error
}
