package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/subject"
)

// KVStore is a Store in NATS JetStream key-value buckets (subject.AuthUsersBucket and
// subject.AuthAPIKeysBucket), file-stored and replicated with the cluster: every auth
// instance sees the same users and keys, and none of them is lost when auth restarts or Redis
// is emptied.
//
// Users are keyed "u.<base64url name>"; a key is stored twice, "h.<hash>" (the record, what an
// agent's connect reads) and "i.<id>" (its hash, for revoke), both created exclusively so an
// id or hash is never taken twice, even by two instances at once.
type KVStore struct {
	users, keys jetstream.KeyValue
}

var _ Store = (*KVStore)(nil)

// KVConfig says how the auth buckets are made.
type KVConfig struct {
	// Replicas is the number of copies in a NATS cluster (3 on a production cluster); 0 means 1.
	Replicas int
	// Memory keeps the buckets in memory instead of files: tests only.
	Memory bool
}

// bucket creates or updates one of auth's buckets; every instance calls it at start with the
// same settings, so which one runs first does not matter.
func (c KVConfig) bucket(ctx context.Context, js jetstream.JetStream, name string, ttl time.Duration) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{Bucket: name, History: 1, TTL: ttl, Replicas: max(c.Replicas, 1), Storage: jetstream.FileStorage}
	if c.Memory {
		cfg.Storage = jetstream.MemoryStorage
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", name, err)
	}
	return kv, nil
}

// NewKVStore makes (or binds) the users and API key buckets.
func NewKVStore(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	users, err := cfg.bucket(ctx, js, subject.AuthUsersBucket, 0)
	if err != nil {
		return nil, err
	}
	keys, err := cfg.bucket(ctx, js, subject.AuthAPIKeysBucket, 0)
	if err != nil {
		return nil, err
	}
	return &KVStore{users: users, keys: keys}, nil
}

func userKey(name string) string { return "u." + base64.RawURLEncoding.EncodeToString([]byte(name)) }

// kvKeyword keeps a stored id or hash to the characters a KV key allows; ours are hex, but a
// caller's hash is input.
func kvKeyword(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	})
}

type kvUser struct {
	Hash        []byte   `json:"hash"`
	Permissions []string `json:"permissions"`
}

// GetUser implements Store.
func (s *KVStore) GetUser(ctx context.Context, name string) (User, error) {
	e, err := s.users.Get(ctx, userKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return User{}, fmt.Errorf("%q: %w", name, ErrUserNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	var u kvUser
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	return User{Name: name, PasswordHash: u.Hash, Permissions: u.Permissions}, nil
}

// PutUser implements Store.
func (s *KVStore) PutUser(ctx context.Context, u User) error {
	if u.Name == "" {
		return errors.New("put user: empty name")
	}
	data, err := json.Marshal(kvUser{Hash: u.PasswordHash, Permissions: u.Permissions})
	if err != nil {
		return fmt.Errorf("put user %q: %w", u.Name, err)
	}
	if _, err := s.users.Put(ctx, userKey(u.Name), data); err != nil {
		return fmt.Errorf("put user %q: %w", u.Name, err)
	}
	return nil
}

// PutAPIKey implements Store.
func (s *KVStore) PutAPIKey(ctx context.Context, k APIKey) error {
	if err := checkAPIKey(k); err != nil {
		return err
	}
	if !kvKeyword(k.ID) || !kvKeyword(k.Hash) {
		return errors.New("put api key: id and hash must be letters, digits, - or _")
	}
	data, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("put api key: %w", err)
	}
	if _, err := s.keys.Create(ctx, "i."+k.ID, []byte(k.Hash)); errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("id %q: %w", k.ID, ErrAPIKeyExists)
	} else if err != nil {
		return fmt.Errorf("put api key: %w", err)
	}
	if _, err := s.keys.Create(ctx, "h."+k.Hash, data); err != nil {
		// Give the id back; the hash belongs to another key (or the write failed).
		_ = s.keys.Delete(ctx, "i."+k.ID)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("hash: %w", ErrAPIKeyExists)
		}
		return fmt.Errorf("put api key: %w", err)
	}
	return nil
}

// apiKeyEntry reads the record stored under "h.<hash>" and its revision.
func (s *KVStore) apiKeyEntry(ctx context.Context, hash string) (APIKey, uint64, error) {
	if !kvKeyword(hash) {
		return APIKey{}, 0, ErrAPIKeyNotFound
	}
	e, err := s.keys.Get(ctx, "h."+hash)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return APIKey{}, 0, ErrAPIKeyNotFound
	}
	if err != nil {
		return APIKey{}, 0, fmt.Errorf("get api key: %w", err)
	}
	var k APIKey
	if err := json.Unmarshal(e.Value(), &k); err != nil {
		return APIKey{}, 0, fmt.Errorf("get api key: %w", err)
	}
	return k, e.Revision(), nil
}

// APIKeyByHash implements Store.
func (s *KVStore) APIKeyByHash(ctx context.Context, hash string) (APIKey, error) {
	k, _, err := s.apiKeyEntry(ctx, hash)
	return k, err
}

// ListAPIKeys implements Store.
func (s *KVStore) ListAPIKeys(ctx context.Context, serverID string) ([]APIKey, error) {
	lister, err := s.keys.ListKeysFiltered(ctx, "h.*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return []APIKey{}, nil
		}
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer lister.Stop()
	out := []APIKey{}
	for key := range lister.Keys() {
		k, _, err := s.apiKeyEntry(ctx, strings.TrimPrefix(key, "h."))
		if errors.Is(err, ErrAPIKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list api keys: %w", err)
		}
		if serverID == "" || k.ServerID == serverID {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, compareAPIKeys)
	return out, nil
}

// casAttempts bounds retries of a revision-checked update that lost a race.
const casAttempts = 5

// RevokeAPIKey implements Store.
func (s *KVStore) RevokeAPIKey(ctx context.Context, id string) error {
	if !kvKeyword(id) {
		return fmt.Errorf("id %q: %w", id, ErrAPIKeyNotFound)
	}
	e, err := s.keys.Get(ctx, "i."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("id %q: %w", id, ErrAPIKeyNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	for range casAttempts {
		k, rev, err := s.apiKeyEntry(ctx, string(e.Value()))
		if err != nil {
			return fmt.Errorf("revoke api key %q: %w", id, err)
		}
		if k.Revoked {
			return nil
		}
		k.Revoked = true
		data, err := json.Marshal(k)
		if err != nil {
			return fmt.Errorf("revoke api key: %w", err)
		}
		if _, err := s.keys.Update(ctx, "h."+k.Hash, data, rev); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("revoke api key: %w", err)
		}
	}
	return fmt.Errorf("revoke api key %q: too many concurrent updates", id)
}
