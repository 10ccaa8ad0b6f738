package registry_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
)

// BenchmarkList10k lists 10,000 registered connections: go test -run '^$' -bench List10k ./registry/
func BenchmarkList10k(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchList(b, registry.NewMemory()) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		b.Cleanup(func() { rdb.Close() })
		benchList(b, registry.NewRedis(rdb, "bench:"))
	})
}

func benchList(b *testing.B, r registry.Registry) {
	ctx := context.Background()
	const n = 10000
	for i := range n {
		c := registry.Conn{ID: fmt.Sprintf("c%05d", i), RemoteAddr: fmt.Sprintf("10.%d.%d.1:%d", i/256%256, i%256, 40000+i%20000),
			Principal: fmt.Sprintf("user:u%d", i%100), CreateTime: time.Now().UTC(), Websocket: true,
			Instance: fmt.Sprintf("edge-%d", i%4), Endpoint: "drp"}
		if err := r.Add(ctx, c, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		cs, err := r.List(ctx, registry.Query{})
		if err != nil || len(cs) != n {
			b.Fatalf("List = %d, %v", len(cs), err)
		}
	}
}
