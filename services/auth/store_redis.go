package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix is the key prefix the commands use for auth's data.
const DefaultRedisPrefix = "herald:auth:"

// RedisStore is a Store in Redis, shared by every auth replica, so users and
// API keys survive restarts. Keys (prefix first):
//
//	<prefix>user:<name>        string: the user as JSON
//	<prefix>apikey:<sha256>    hash {id, server_id, name, created_at, revoked}
//	<prefix>apikey-id:<id>     string: the key's sha256, to revoke by id
//	<prefix>apikeys            set of every key's sha256, to list
//
// Verification, the hot path, is one HGETALL. The secret is never written.
type RedisStore struct {
	rdb    *redis.Client
	prefix string
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a Store on rdb with every key under prefix (e.g.
// DefaultRedisPrefix). It does not dial; the first call does.
func NewRedisStore(rdb *redis.Client, prefix string) *RedisStore {
	return &RedisStore{rdb: rdb, prefix: prefix}
}

func (r *RedisStore) userKey(name string) string { return r.prefix + "user:" + name }
func (r *RedisStore) keyKey(hash string) string  { return r.prefix + "apikey:" + hash }
func (r *RedisStore) idKey(id string) string     { return r.prefix + "apikey-id:" + id }
func (r *RedisStore) setKey() string             { return r.prefix + "apikeys" }

// redisUser is a User's JSON form in Redis.
type redisUser struct {
	Name         string   `json:"name"`
	PasswordHash string   `json:"password_hash"`
	Permissions  []string `json:"permissions"`
}

// GetUser implements Store.
func (r *RedisStore) GetUser(ctx context.Context, name string) (User, error) {
	data, err := r.rdb.Get(ctx, r.userKey(name)).Bytes()
	if errors.Is(err, redis.Nil) {
		return User{}, fmt.Errorf("%q: %w", name, ErrUserNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	var ru redisUser
	if err := json.Unmarshal(data, &ru); err != nil {
		return User{}, fmt.Errorf("get user %q: %w", name, err)
	}
	return User{Name: ru.Name, PasswordHash: []byte(ru.PasswordHash), Permissions: ru.Permissions}, nil
}

// PutUser implements Store.
func (r *RedisStore) PutUser(ctx context.Context, u User) error {
	if u.Name == "" {
		return errors.New("put user: empty name")
	}
	data, err := json.Marshal(redisUser{Name: u.Name, PasswordHash: string(u.PasswordHash), Permissions: u.Permissions})
	if err != nil {
		return fmt.Errorf("put user %q: %w", u.Name, err)
	}
	if err := r.rdb.Set(ctx, r.userKey(u.Name), data, 0).Err(); err != nil {
		return fmt.Errorf("put user %q: %w", u.Name, err)
	}
	return nil
}

// putAPIKey writes the three keys of a new API key at once, unless its id
// (result 1) or its hash (result 2) is taken.
var putAPIKey = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'server_id', ARGV[3], 'name', ARGV[4], 'created_at', ARGV[5], 'revoked', '0')
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 0
`)

// PutAPIKey implements Store.
func (r *RedisStore) PutAPIKey(ctx context.Context, k APIKey) error {
	if err := checkAPIKey(k); err != nil {
		return err
	}
	res, err := putAPIKey.Run(ctx, r.rdb,
		[]string{r.keyKey(k.Hash), r.idKey(k.ID), r.setKey()},
		k.Hash, k.ID, k.ServerID, k.Name, k.CreatedAt.UTC().Format(time.RFC3339Nano)).Int()
	switch {
	case err != nil:
		return fmt.Errorf("put api key %q: %w", k.ID, err)
	case res == 1:
		return fmt.Errorf("id %q: %w", k.ID, ErrAPIKeyExists)
	case res == 2:
		return fmt.Errorf("hash: %w", ErrAPIKeyExists)
	}
	return nil
}

// APIKeyByHash implements Store.
func (r *RedisStore) APIKeyByHash(ctx context.Context, hash string) (APIKey, error) {
	fields, err := r.rdb.HGetAll(ctx, r.keyKey(hash)).Result()
	if err != nil {
		return APIKey{}, fmt.Errorf("api key by hash: %w", err)
	}
	return decodeAPIKey(hash, fields)
}

// ListAPIKeys implements Store.
func (r *RedisStore) ListAPIKeys(ctx context.Context, serverID string) ([]APIKey, error) {
	hashes, err := r.rdb.SMembers(ctx, r.setKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(hashes))
	if _, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, h := range hashes {
			cmds[i] = p.HGetAll(ctx, r.keyKey(h))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	out := make([]APIKey, 0, len(hashes))
	for i, cmd := range cmds {
		k, err := decodeAPIKey(hashes[i], cmd.Val())
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

// RevokeAPIKey implements Store. Records are never deleted, so the hash
// found by id still names a record when the flag is set.
func (r *RedisStore) RevokeAPIKey(ctx context.Context, id string) error {
	hash, err := r.rdb.Get(ctx, r.idKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("id %q: %w", id, ErrAPIKeyNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke api key %q: %w", id, err)
	}
	if err := r.rdb.HSet(ctx, r.keyKey(hash), "revoked", "1").Err(); err != nil {
		return fmt.Errorf("revoke api key %q: %w", id, err)
	}
	return nil
}

// decodeAPIKey reads a key's hash fields; none at all means not found.
func decodeAPIKey(hash string, f map[string]string) (APIKey, error) {
	if len(f) == 0 {
		return APIKey{}, ErrAPIKeyNotFound
	}
	created, err := time.Parse(time.RFC3339Nano, f["created_at"])
	if err != nil {
		return APIKey{}, fmt.Errorf("api key %q: created_at: %w", f["id"], err)
	}
	return APIKey{
		ID:        f["id"],
		Hash:      hash,
		ServerID:  f["server_id"],
		Name:      f["name"],
		CreatedAt: created,
		Revoked:   f["revoked"] == "1",
	}, nil
}
