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
	mu     sync.RWMutex
	users  map[string]User
	keys   map[string]APIKey // by Hash
	keyIDs map[string]string // ID -> Hash
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		users:  make(map[string]User),
		keys:   make(map[string]APIKey),
		keyIDs: make(map[string]string),
	}
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

// PutAPIKey implements Store.
func (m *MemoryStore) PutAPIKey(_ context.Context, k APIKey) error {
	if err := checkAPIKey(k); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keyIDs[k.ID]; ok {
		return fmt.Errorf("id %q: %w", k.ID, ErrAPIKeyExists)
	}
	if _, ok := m.keys[k.Hash]; ok {
		return fmt.Errorf("hash: %w", ErrAPIKeyExists)
	}
	m.keys[k.Hash] = k
	m.keyIDs[k.ID] = k.Hash
	return nil
}

// APIKeyByHash implements Store.
func (m *MemoryStore) APIKeyByHash(_ context.Context, hash string) (APIKey, error) {
	m.mu.RLock()
	k, ok := m.keys[hash]
	m.mu.RUnlock()
	if !ok {
		return APIKey{}, ErrAPIKeyNotFound
	}
	return k, nil
}

// ListAPIKeys implements Store.
func (m *MemoryStore) ListAPIKeys(_ context.Context, serverID string) ([]APIKey, error) {
	m.mu.RLock()
	out := make([]APIKey, 0, len(m.keys))
	for _, k := range m.keys {
		if serverID == "" || k.ServerID == serverID {
			out = append(out, k)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(out, compareAPIKeys)
	return out, nil
}

// RevokeAPIKey implements Store.
func (m *MemoryStore) RevokeAPIKey(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	hash, ok := m.keyIDs[id]
	if !ok {
		return fmt.Errorf("id %q: %w", id, ErrAPIKeyNotFound)
	}
	k := m.keys[hash]
	k.Revoked = true
	m.keys[hash] = k
	return nil
}

func cloneUser(u User) User {
	u.PasswordHash = slices.Clone(u.PasswordHash)
	u.Permissions = slices.Clone(u.Permissions)
	return u
}
