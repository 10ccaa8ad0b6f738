package auth

import (
	"context"
	"errors"
	"time"
)

// Store errors, wrapped with the detail.
var (
	// ErrUserNotFound is returned by Store.GetUser for an unknown name.
	ErrUserNotFound = errors.New("user not found")
	// ErrAPIKeyNotFound is returned for an unknown key id or hash.
	ErrAPIKeyNotFound = errors.New("api key not found")
	// ErrAPIKeyExists is returned by Store.PutAPIKey when the id or the
	// hash is already taken.
	ErrAPIKeyExists = errors.New("api key already exists")
)

// User is an account that can log in.
type User struct {
	// Name is the login name and the token subject.
	Name string
	// PasswordHash is a bcrypt hash; the password itself is never stored.
	PasswordHash []byte
	// Permissions are "type.action.key" filters granted to the user's tokens.
	Permissions []string
}

// APIKey is a stored API key: everything but the secret, which exists only
// in the agent's configuration. Hash is the hex SHA-256 of the secret; a
// fast hash is enough (unlike passwords) because the secret is 32 random
// bytes, and it makes lookup a single read instead of a bcrypt compare per
// stored key.
type APIKey struct {
	// ID is the key's short public id, for listing and revoking.
	ID string
	// Hash is the lowercase hex SHA-256 of the secret.
	Hash string
	// ServerID is the server whose agent the key authenticates.
	ServerID string
	// Name is an optional label for people.
	Name string
	// CreatedAt is when the key was made (UTC).
	CreatedAt time.Time
	// Revoked keys are kept, so listings show them, but never verify.
	Revoked bool
}

// Store keeps users and API keys. Implementations are safe for concurrent
// use and return copies, so callers may keep what they get.
// authtest.RunStore is the contract every implementation passes.
type Store interface {
	// GetUser returns the user called name, or an error wrapping
	// ErrUserNotFound.
	GetUser(ctx context.Context, name string) (User, error)
	// PutUser creates or replaces the user called u.Name.
	PutUser(ctx context.Context, u User) error

	// PutAPIKey adds k. An id or hash already stored gives an error
	// wrapping ErrAPIKeyExists and changes nothing; keys are never replaced.
	PutAPIKey(ctx context.Context, k APIKey) error
	// APIKeyByHash returns the key whose Hash is hash, revoked or not, or an
	// error wrapping ErrAPIKeyNotFound.
	APIKeyByHash(ctx context.Context, hash string) (APIKey, error)
	// ListAPIKeys returns the keys of serverID (every key when it is
	// empty), revoked ones included, ordered by CreatedAt then ID.
	ListAPIKeys(ctx context.Context, serverID string) ([]APIKey, error)
	// RevokeAPIKey marks the key with that id revoked; revoking twice is
	// not an error. An unknown id gives an error wrapping ErrAPIKeyNotFound.
	RevokeAPIKey(ctx context.Context, id string) error
}

// checkAPIKey is the sanity check every store makes before writing.
func checkAPIKey(k APIKey) error {
	switch {
	case k.ID == "":
		return errors.New("put api key: empty id")
	case k.Hash == "":
		return errors.New("put api key: empty hash")
	case k.ServerID == "":
		return errors.New("put api key: empty server id")
	}
	return nil
}

// compareAPIKeys orders keys as ListAPIKeys promises.
func compareAPIKeys(a, b APIKey) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	switch {
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return 0
}
