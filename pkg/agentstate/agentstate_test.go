package agentstate_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/agentstate/agentstatetest"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
)

var redisServer *redistest.Server

func TestMain(m *testing.M) {
	s, stop := redistest.StartMain()
	redisServer = s
	code := m.Run()
	stop()
	os.Exit(code)
}

func TestMemory(t *testing.T) {
	agentstatetest.Run(t, func(*testing.T) agentstate.Store { return agentstate.NewMemory() })
}

var prefixes atomic.Int64

func TestRedis(t *testing.T) {
	agentstatetest.Run(t, func(t *testing.T) agentstate.Store {
		rdb := redis.NewClient(&redis.Options{Addr: redisServer.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		// A prefix per store keeps the subtests' keys apart on the shared server.
		return agentstate.NewRedis(rdb, fmt.Sprintf("test%d:", prefixes.Add(1)))
	})
}

// TestRedisSharedBetweenClients checks two processes' clients see one state: a sample put
// through one is not fresh through the other.
func TestRedisSharedBetweenClients(t *testing.T) {
	newClient := func() *redis.Client {
		rdb := redis.NewClient(&redis.Options{Addr: redisServer.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	prefix := fmt.Sprintf("shared%d:", prefixes.Add(1)) // fresh keys on every run
	a := agentstate.NewRedis(newClient(), prefix)
	b := agentstate.NewRedis(newClient(), prefix)
	ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if fresh, err := a.PutMetrics(t.Context(), "srv", ts, []byte(`{"n":1}`)); !fresh || err != nil {
		t.Fatalf("first put: %v, %v", fresh, err)
	}
	if fresh, err := b.PutMetrics(t.Context(), "srv", ts, []byte(`{"n":1}`)); fresh || err != nil {
		t.Fatalf("same sample through the second client: fresh=%v err=%v", fresh, err)
	}
}
