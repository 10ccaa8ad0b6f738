package registry_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/registry/registrytest"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
)

func TestMemoryContract(t *testing.T) {
	registrytest.Run(t, func(*testing.T) registry.Registry { return registry.NewMemory() })
}

func TestRedisContract(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	var n atomic.Int64
	registrytest.Run(t, func(*testing.T) registry.Registry {
		return registry.NewRedis(rdb, fmt.Sprintf("test%d:", n.Add(1)))
	})
}
