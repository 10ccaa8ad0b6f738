package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix is the key prefix every Herald process uses for the registry.
const DefaultRedisPrefix = "herald:conns:"

// Redis is the Registry shared by a cluster. Keys (prefix first):
//
//	<prefix>entries   hash {<id>: Conn JSON}
//	<prefix>deadline  sorted set {<id>: deadline, Unix milliseconds}
//	<prefix>addr      hash {<remote addr>: <id>}
//
// Deadlines come from the writer's clock; instances are expected to agree on time within a
// small fraction of the TTL. Removal and sweeping run as Lua scripts, so an expired entry is
// removed (and its delete event published) by exactly one sweeper, without a lock.
type Redis struct {
	rdb    *redis.Client
	prefix string
	now    func() time.Time
}

var _ Registry = (*Redis)(nil)

// NewRedis returns a Registry on rdb with every key under prefix (normally
// DefaultRedisPrefix).
func NewRedis(rdb *redis.Client, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix, now: time.Now}
}

func (r *Redis) keys() []string {
	return []string{r.prefix + "entries", r.prefix + "deadline", r.prefix + "addr"}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// Add implements Registry.
func (r *Redis) Add(ctx context.Context, c Conn, ttl time.Duration) error {
	if err := validate(c); err != nil {
		return err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("registry: encode: %w", err)
	}
	k := r.keys()
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k[0], c.ID, b)
		p.ZAdd(ctx, k[1], redis.Z{Score: float64(ms(r.now().Add(ttl))), Member: c.ID})
		if c.RemoteAddr != "" {
			p.HSet(ctx, k[2], c.RemoteAddr, c.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: add %s: %w", c.ID, err)
	}
	return nil
}

// removeLua deletes one entry and its address index (when the index still points at it) and
// returns the entry's JSON, or false.
const removeOne = `
local function remove(id)
  local j = redis.call('HGET', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  if not j then return false end
  redis.call('HDEL', KEYS[1], id)
  local ok, c = pcall(cjson.decode, j)
  if ok and type(c) == 'table' and type(c.RemoteAddr) == 'string' and c.RemoteAddr ~= '' then
    if redis.call('HGET', KEYS[3], c.RemoteAddr) == id then redis.call('HDEL', KEYS[3], c.RemoteAddr) end
  end
  return j
end
`

var removeScript = redis.NewScript(removeOne + `return remove(ARGV[1])`)

// sweepScript removes the entries whose deadline (ARGV[1]) passed, at most ARGV[2] of them.
var sweepScript = redis.NewScript(removeOne + `
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local j = remove(id)
  if j then table.insert(out, j) end
end
return out
`)

// refreshScript moves the deadline of each live ARGV[3..] to ARGV[2] and returns those that
// are absent or already expired (ARGV[1] is now).
var refreshScript = redis.NewScript(`
local now, deadline = tonumber(ARGV[1]), ARGV[2]
local missing = {}
for i = 3, #ARGV do
  local s = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if s and tonumber(s) > now and redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], deadline, ARGV[i])
  else
    table.insert(missing, ARGV[i])
  end
end
return missing
`)

// refreshBatch bounds the IDs one script call handles, so Redis is never held for long.
const refreshBatch = 2000

// Remove implements Registry.
func (r *Redis) Remove(ctx context.Context, id string) error {
	if err := removeScript.Run(ctx, r.rdb, r.keys(), id).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("registry: remove %s: %w", id, err)
	}
	return nil
}

// Refresh implements Registry.
func (r *Redis) Refresh(ctx context.Context, ids []string, ttl time.Duration) ([]string, error) {
	var missing []string
	now := r.now()
	for start := 0; start < len(ids); start += refreshBatch {
		batch := ids[start:min(start+refreshBatch, len(ids))]
		args := make([]any, 0, len(batch)+2)
		args = append(args, ms(now), ms(now.Add(ttl)))
		for _, id := range batch {
			args = append(args, id)
		}
		got, err := refreshScript.Run(ctx, r.rdb, r.keys(), args...).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("registry: refresh: %w", err)
		}
		missing = append(missing, got...)
	}
	return missing, nil
}

// List implements Registry.
func (r *Redis) List(ctx context.Context, q Query) ([]Conn, error) {
	k := r.keys()
	var all *redis.MapStringStringCmd
	var live *redis.StringSliceCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, k[0])
		live = p.ZRangeByScore(ctx, k[1], &redis.ZRangeBy{Min: "(" + strconv.FormatInt(ms(r.now()), 10), Max: "+inf"})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	alive := make(map[string]struct{}, len(live.Val()))
	for _, id := range live.Val() {
		alive[id] = struct{}{}
	}
	out := make([]Conn, 0, len(alive))
	for id, j := range all.Val() {
		if _, ok := alive[id]; !ok {
			continue
		}
		var c Conn
		if err := json.Unmarshal([]byte(j), &c); err != nil {
			continue // written by something else; never ours
		}
		if q.Matches(c) {
			out = append(out, c)
		}
	}
	sortConns(out)
	return out, nil
}

// Get implements Registry.
func (r *Redis) Get(ctx context.Context, remoteAddr string) (Conn, error) {
	k := r.keys()
	id, err := r.rdb.HGet(ctx, k[2], remoteAddr).Result()
	if errors.Is(err, redis.Nil) {
		return Conn{}, ErrNotFound
	}
	if err != nil {
		return Conn{}, fmt.Errorf("registry: get %s: %w", remoteAddr, err)
	}
	var j *redis.StringCmd
	var score *redis.FloatCmd
	_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		j = p.HGet(ctx, k[0], id)
		score = p.ZScore(ctx, k[1], id)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return Conn{}, ErrNotFound
	}
	if err != nil {
		return Conn{}, fmt.Errorf("registry: get %s: %w", remoteAddr, err)
	}
	if int64(score.Val()) <= ms(r.now()) {
		return Conn{}, ErrNotFound
	}
	var c Conn
	if err := json.Unmarshal([]byte(j.Val()), &c); err != nil {
		return Conn{}, fmt.Errorf("registry: get %s: decode: %w", remoteAddr, err)
	}
	return c, nil
}

// Sweep implements Registry.
func (r *Redis) Sweep(ctx context.Context) ([]Conn, error) {
	got, err := sweepScript.Run(ctx, r.rdb, r.keys(), ms(r.now()), SweepLimit).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("registry: sweep: %w", err)
	}
	out := make([]Conn, 0, len(got))
	for _, j := range got {
		var c Conn
		if json.Unmarshal([]byte(j), &c) == nil {
			out = append(out, c)
		}
	}
	sortConns(out)
	return out, nil
}
