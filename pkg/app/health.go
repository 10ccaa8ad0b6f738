package app

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Health serves /healthz (the process is alive) and /readyz (it should get
// traffic). As a Runner placed last in app.Run it marks the process ready
// once everything before it started, and, being stopped first, turns
// /readyz to 503 before any listener closes.
type Health struct {
	// DrainDelay keeps the process serving after /readyz turned 503, so
	// load balancers notice before listeners close. Zero means none.
	DrainDelay time.Duration
	// CheckTimeout bounds each readiness check. Zero means 2s.
	CheckTimeout time.Duration

	mu       sync.Mutex
	ready    bool
	stopping bool
	checks   []namedCheck
}

type namedCheck struct {
	name     string
	f        func(ctx context.Context) error
	degraded bool // failing degrades the process but leaves it ready
}

// AddCheck registers a readiness check: /readyz answers 503 naming the
// first check that fails.
func (h *Health) AddCheck(name string, f func(ctx context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, namedCheck{name: name, f: f})
}

// AddDegradedCheck registers a check for something the process keeps serving without (a
// connection registry in Redis, say): when it fails, /readyz still answers 200 but says
// "degraded" and why, so a load balancer keeps sending traffic and a person sees the cause.
func (h *Health) AddDegradedCheck(name string, f func(ctx context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, namedCheck{name: name, f: f, degraded: true})
}

// SetReady marks the process ready or not; Run does it for you.
func (h *Health) SetReady(ready bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready = ready
}

// Run marks the process ready, waits for ctx, then marks it shutting
// down (readiness 503 from then on) and waits DrainDelay.
func (h *Health) Run(ctx context.Context) error {
	h.SetReady(true)
	<-ctx.Done()
	h.mu.Lock()
	h.stopping = true
	h.mu.Unlock()
	if h.DrainDelay > 0 {
		t := time.NewTimer(h.DrainDelay)
		defer t.Stop()
		<-t.C
	}
	return nil
}

// Register adds GET /healthz and GET /readyz to mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", h.serveReady)
}

func (h *Health) serveReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := h.Check(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	if err := h.Degraded(r.Context()); err != nil {
		fmt.Fprintln(w, "ready, degraded:", err)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Degraded reports the failing degraded checks, or nil.
func (h *Health) Degraded(ctx context.Context) error {
	return h.run(ctx, true)
}

// Check reports why the process is not ready, or nil.
func (h *Health) Check(ctx context.Context) error {
	h.mu.Lock()
	ready, stopping := h.ready, h.stopping
	h.mu.Unlock()
	switch {
	case stopping:
		return fmt.Errorf("shutting down")
	case !ready:
		return fmt.Errorf("starting")
	}
	return h.run(ctx, false)
}

// run runs the checks of one kind and returns the first failure.
func (h *Health) run(ctx context.Context, degraded bool) error {
	h.mu.Lock()
	checks := h.checks
	h.mu.Unlock()
	for _, c := range checks {
		if c.degraded != degraded {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, orDuration(h.CheckTimeout, 2*time.Second))
		err := c.f(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}
