package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// MemoryStore is a Store held in process memory: the all-in-one default.
// Its content is lost on restart.
type MemoryStore struct {
	mu    sync.RWMutex
	users map[string]User
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{users: make(map[string]User)}
}

// GetUser implements Store.
func (m *MemoryStore) GetUser(_ context.Context, name string) (User, error) {
	m.mu.RLock()
	u, ok := m.users[name]
	m.mu.RUnlock()
	if !ok {
		return User{}, fmt.Errorf("%q: %w", name, ErrUserNotFound)
	}
	return cloneUser(u), nil
}

// PutUser implements Store.
func (m *MemoryStore) PutUser(_ context.Context, u User) error {
	if u.Name == "" {
		return errors.New("put user: empty name")
	}
	m.mu.Lock()
	m.users[u.Name] = cloneUser(u)
	m.mu.Unlock()
	return nil
}

func cloneUser(u User) User {
	u.PasswordHash = slices.Clone(u.PasswordHash)
	u.Permissions = slices.Clone(u.Permissions)
	return u
}
