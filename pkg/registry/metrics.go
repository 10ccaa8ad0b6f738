package registry

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/pkg/metrics"
)

// instrumented counts every call to a Registry by operation and result.
type instrumented struct{ Registry }

func observe(op string, err error) error {
	result := "ok"
	if err != nil {
		result = "error"
	}
	metrics.RegistryOps.WithLabelValues(op, result).Inc()
	return err
}

func (r instrumented) Add(ctx context.Context, c Conn, ttl time.Duration) error {
	return observe("add", r.Registry.Add(ctx, c, ttl))
}

func (r instrumented) Remove(ctx context.Context, id string) error {
	return observe("remove", r.Registry.Remove(ctx, id))
}

func (r instrumented) Refresh(ctx context.Context, ids []string, ttl time.Duration) ([]string, error) {
	missing, err := r.Registry.Refresh(ctx, ids, ttl)
	return missing, observe("refresh", err)
}

func (r instrumented) List(ctx context.Context, q Query) ([]Conn, error) {
	cs, err := r.Registry.List(ctx, q)
	return cs, observe("list", err)
}

func (r instrumented) Get(ctx context.Context, remoteAddr string) (Conn, error) {
	c, err := r.Registry.Get(ctx, remoteAddr)
	if errors.Is(err, ErrNotFound) {
		observe("get", nil) // an answer, not a failure
		return c, err
	}
	return c, observe("get", err)
}

func (r instrumented) Sweep(ctx context.Context) ([]Conn, error) {
	cs, err := r.Registry.Sweep(ctx)
	return cs, observe("sweep", err)
}

// degradedClock adds a tracker's degraded time to the process's metrics.
type degradedClock struct{ since atomic.Int64 } // unix nanoseconds; 0: healthy

func (d *degradedClock) enter() {
	if d.since.CompareAndSwap(0, time.Now().UnixNano()) {
		metrics.RegistryDegraded.Inc()
	}
}

func (d *degradedClock) leave() {
	if since := d.since.Swap(0); since != 0 {
		metrics.RegistryDegraded.Dec()
		metrics.RegistryDegradedSeconds.Add(time.Since(time.Unix(0, since)).Seconds())
	}
}
