// Package redisx opens the Redis client Herald's services share, from one URL setting.
package redisx

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// pingTimeout bounds the start-up check.
const pingTimeout = 5 * time.Second

// Open parses url (redis://[:password@]host:port/db) and returns a client. A Redis that does
// not answer at start is logged, not fatal: the registry and agent state keep serving without
// it and catch up when it returns (issue 4). Only a malformed URL is an error.
func Open(ctx context.Context, url string, log *slog.Logger) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil && log != nil {
		log.Warn("redis does not answer yet; serving degraded until it does", "addr", opts.Addr, "err", err)
	}
	return rdb, nil
}
