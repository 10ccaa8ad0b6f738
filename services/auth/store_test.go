package auth_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/pkg/testutil/redistest"
	"github.com/heraldhq/herald/services/auth"
	"github.com/heraldhq/herald/services/auth/authtest"
)

// redisServer is the one redis-server of this package's tests; each test
// keeps to a key prefix of its own (see newRedisStore).
var redisServer *redistest.Server

func TestMain(m *testing.M) {
	srv, stop := redistest.StartMain()
	redisServer = srv
	code := m.Run()
	stop()
	os.Exit(code)
}

// redisClient returns a client of the package's redis-server, closed on
// cleanup.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisServer.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

var prefixSeq atomic.Int64

// newRedisStore returns an empty RedisStore under a prefix no other test
// uses, and that prefix.
func newRedisStore(t *testing.T) (*auth.RedisStore, *redis.Client, string) {
	t.Helper()
	rdb := redisClient(t)
	prefix := fmt.Sprintf("test%d:%s:", prefixSeq.Add(1), t.Name())
	return auth.NewRedisStore(rdb, prefix), rdb, prefix
}

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	authtest.RunStore(t, func(*testing.T) auth.Store { return auth.NewMemoryStore() })
}

func TestRedisStore(t *testing.T) {
	t.Parallel()
	authtest.RunStore(t, func(t *testing.T) auth.Store {
		st, _, _ := newRedisStore(t)
		return st
	})
}
