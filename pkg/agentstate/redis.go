package agentstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the Store shared by every process of a cluster. Keys (prefix first):
//
//	<prefix>metrics:<server id>  hash {ts, sample}: the latest sample and its time
//	<prefix>facts                hash {<server id>: facts JSON}
//	<prefix>alerts:<server id>   string: the alert state JSON, expiring ttl after its last put
//
// ts is a fixed-width UTC timestamp with nanoseconds, so Lua's string comparison orders it
// chronologically (Lua numbers are doubles and would lose the nanoseconds of UnixNano).
type Redis struct {
	rdb    *redis.Client
	prefix string
}

var _ Store = (*Redis)(nil)

// DefaultRedisPrefix is the key prefix every Herald process uses for agent state, so ingests
// (writers) and edges (readers of the latest sample) meet on the same keys.
const DefaultRedisPrefix = "herald:agent:"

// NewRedis returns a Store on rdb with every key under prefix (normally DefaultRedisPrefix).
func NewRedis(rdb *redis.Client, prefix string) *Redis { return &Redis{rdb: rdb, prefix: prefix} }

// tsLayout is fixed width for years 0000-9999, so byte order is time order.
const tsLayout = "2006-01-02T15:04:05.000000000Z"

// putMetrics stores ARGV[2] with time ARGV[1] unless the stored time is the same or later.
var putMetrics = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'ts')
if cur and cur >= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'sample', ARGV[2])
return 1
`)

func (r *Redis) metricsKey(serverID string) string { return r.prefix + "metrics:" + serverID }
func (r *Redis) factsKey() string                  { return r.prefix + "facts" }
func (r *Redis) alertsKey(serverID string) string  { return r.prefix + "alerts:" + serverID }

// PutMetrics implements Store.
func (r *Redis) PutMetrics(ctx context.Context, serverID string, ts time.Time, sample json.RawMessage) (bool, error) {
	if err := check(serverID, sample); err != nil {
		return false, err
	}
	if y := ts.UTC().Year(); y < 0 || y > 9999 {
		return false, fmt.Errorf("%w: time %v out of range", ErrInvalid, ts)
	}
	n, err := putMetrics.Run(ctx, r.rdb, []string{r.metricsKey(serverID)},
		ts.UTC().Format(tsLayout), []byte(sample)).Int()
	if err != nil {
		return false, fmt.Errorf("agentstate: put metrics %q: %w", serverID, err)
	}
	return n == 1, nil
}

// LatestMetrics implements Store.
func (r *Redis) LatestMetrics(ctx context.Context, serverID string) (json.RawMessage, bool, error) {
	b, err := r.rdb.HGet(ctx, r.metricsKey(serverID), "sample").Bytes()
	return found(b, err, "latest metrics", serverID)
}

// PutFacts implements Store.
func (r *Redis) PutFacts(ctx context.Context, serverID string, facts json.RawMessage) error {
	if err := check(serverID, facts); err != nil {
		return err
	}
	if err := r.rdb.HSet(ctx, r.factsKey(), serverID, []byte(facts)).Err(); err != nil {
		return fmt.Errorf("agentstate: put facts %q: %w", serverID, err)
	}
	return nil
}

// Facts implements Store.
func (r *Redis) Facts(ctx context.Context, serverID string) (json.RawMessage, bool, error) {
	b, err := r.rdb.HGet(ctx, r.factsKey(), serverID).Bytes()
	return found(b, err, "facts", serverID)
}

// ListFacts implements Store.
func (r *Redis) ListFacts(ctx context.Context) (map[string]json.RawMessage, error) {
	all, err := r.rdb.HGetAll(ctx, r.factsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("agentstate: list facts: %w", err)
	}
	out := make(map[string]json.RawMessage, len(all))
	for id, f := range all {
		out[id] = json.RawMessage(f)
	}
	return out, nil
}

// PutAlerts implements Store.
func (r *Redis) PutAlerts(ctx context.Context, serverID string, state json.RawMessage, ttl time.Duration) error {
	if err := checkTTL(serverID, state, ttl); err != nil {
		return err
	}
	if err := r.rdb.Set(ctx, r.alertsKey(serverID), []byte(state), ttl).Err(); err != nil {
		return fmt.Errorf("agentstate: put alerts %q: %w", serverID, err)
	}
	return nil
}

// Alerts implements Store.
func (r *Redis) Alerts(ctx context.Context, serverID string) (json.RawMessage, bool, error) {
	b, err := r.rdb.Get(ctx, r.alertsKey(serverID)).Bytes()
	return found(b, err, "alerts", serverID)
}

func found(b []byte, err error, what, serverID string) (json.RawMessage, bool, error) {
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("agentstate: %s %q: %w", what, serverID, err)
	}
	return json.RawMessage(b), true, nil
}
