// Package edge is Herald's stateless browser and CLI gateway: it authenticates WebSocket
// clients, subscribes to NATS on their behalf (one subscription per distinct filter, shared by
// every client that wants it) and pushes frames in each client's dialect.
package edge

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/access"
	"github.com/heraldhq/herald/services/edge/drp"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/monitor"
)

// Config is the edge's settings. The zero value of a field means its default.
type Config struct {
	WS              wsconn.Config
	Hub             hub.Config
	ShutdownTimeout time.Duration // how long to wait for clients to go after close 1001 (default 5s)
	AuthTimeout     time.Duration // wait for the first-message auth of monitoring sockets (default 10s)
}

// RegisterFlags binds the settings to flags (edge.max-frame-bytes, edge.send-queue, ...).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.WS.RegisterFlags(fs, "edge.")
	fs.IntVar(&c.Hub.Inbound, "edge.inbound", 0, "events buffered between NATS and the fan-out (0: 65536)")
	fs.DurationVar(&c.ShutdownTimeout, "edge.shutdown-timeout", 0, "wait for clients to close on shutdown (0: 5s)")
	fs.DurationVar(&c.AuthTimeout, "edge.auth-timeout", 0, "wait for the auth message on metrics and logs sockets (0: 10s)")
}

// Validate reports settings that cannot work.
func (c Config) Validate() error { return c.WS.Validate() }

// Deps are the edge's collaborators.
type Deps struct {
	NC       *nats.Conn     // required: events arrive here
	Verifier token.Verifier // required: checks tokens locally
	Latest   monitor.Latest // the latest metrics sample per server (agentstate); nil: none on connect
	Log      *slog.Logger
}

// Edge is one gateway instance.
type Edge struct {
	cfg     Config
	log     *slog.Logger
	hub     *hub.Hub
	drp     *drp.Handler
	metrics *monitor.Handler
	logs    *monitor.Handler
	ready   chan struct{}
}

// New wires an edge; it starts nothing.
func New(cfg Config, deps Deps) (*Edge, error) {
	if deps.NC == nil || deps.Verifier == nil {
		return nil, errors.New("edge: NATS connection and token verifier are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "edge")
	h := hub.New(deps.NC, cfg.Hub, log)
	auth := access.New(deps.Verifier, deps.NC)
	up := wsconn.NewUpgrader(cfg.WS, nil)
	mon := func(k monitor.Kind) *monitor.Handler {
		return &monitor.Handler{Kind: k, Hub: h, Auth: auth, Upgrader: up, Latest: deps.Latest,
			AuthTimeout: cfg.AuthTimeout, Log: log}
	}
	return &Edge{
		cfg: cfg, log: log, hub: h, ready: make(chan struct{}),
		drp:     &drp.Handler{Hub: h, Auth: auth, Upgrader: up, Log: log},
		metrics: mon(monitor.Metrics),
		logs:    mon(monitor.Logs),
	}, nil
}

// Register mounts the edge's WebSocket endpoints.
func (e *Edge) Register(mux *http.ServeMux) {
	mux.Handle("GET "+drp.Path, e.drp)
	mux.Handle("GET "+monitor.MetricsPath, e.metrics)
	mux.Handle("GET "+monitor.LogsPath, e.logs)
}

// Ready is closed once the edge dispatches events.
func (e *Edge) Ready() <-chan struct{} { return e.ready }

// Hub exposes the fan-out core, for tests and metrics.
func (e *Edge) Hub() *hub.Hub { return e.hub }

// Run dispatches events until ctx ends, then closes every client with 1001 "going away"
// (net/http does not close hijacked connections) and waits for them, bounded.
func (e *Edge) Run(ctx context.Context) error {
	hubCtx, stopHub := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.hub.Run(hubCtx) }()
	close(e.ready)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), e.cfg.ShutdownTimeout)
	defer cancel()
	err := e.hub.Shutdown(sctx, 1001, "server shutting down")
	stopHub()
	return errors.Join(err, <-done)
}
