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
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/agentrpc"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventpub"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/edge/chatops"
	"github.com/heraldhq/herald/services/edge/connections"
	"github.com/heraldhq/herald/services/edge/console"
	"github.com/heraldhq/herald/services/edge/drp"
	"github.com/heraldhq/herald/services/edge/drpapi"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/monitor"
	"github.com/heraldhq/herald/services/edge/rancher"
	"github.com/heraldhq/herald/services/edge/salt"
	"github.com/heraldhq/herald/services/edge/socket"
)

// DefaultShutdownTimeout is how long the edge waits for clients to go after close 1001.
const DefaultShutdownTimeout = 5 * time.Second

// DefaultDrainWindow is how long a stopping edge spreads its sockets' 1012 closes over.
const DefaultDrainWindow = 5 * time.Second

// Config is the edge's settings. The zero value of a field means its default.
type Config struct {
	WS              wsconn.Config
	Hub             hub.Config
	ShutdownTimeout time.Duration // how long to wait for clients to go after their close (default 5s)
	// DrainWindow spreads the closes (1012, "reconnect elsewhere") of a stopping edge's sockets
	// over this long, in batches, so its clients do not all reconnect to one neighbour at once
	// (default 5s; negative: all at once).
	DrainWindow time.Duration
	AuthTimeout time.Duration // wait for the first-message auth of monitoring sockets (default 10s)
	// RegistryTTL bounds how long this edge's connections stay listed after it dies without a
	// goodbye (default 30s); entries are refreshed every third of it.
	RegistryTTL time.Duration
	// AllowedOrigins may open cookie-authenticated (R_SESS) Rancher sockets besides the edge's
	// own origin.
	AllowedOrigins   []string
	SaltReplayWindow time.Duration // how far back formatted_events replays jobs and facts (default 1h)
	SaltMaxJobs      int           // jobs kept per formatted_events socket (default 200)
	// MaxReplay bounds the events one resume replays (default socket.DefaultMaxReplay); a
	// client further behind is told its position is too old.
	MaxReplay int
}

// RegisterFlags binds the settings to flags (edge.max-frame-bytes, edge.send-queue, ...).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.WS.RegisterFlags(fs, "edge.")
	// Defaults are the values in force (a zero would mean the same), so -print-config shows them.
	fs.IntVar(&c.Hub.Inbound, "edge.inbound", 65536, "events buffered between NATS and the fan-out")
	fs.DurationVar(&c.ShutdownTimeout, "edge.shutdown-timeout", DefaultShutdownTimeout, "wait for clients to close on shutdown")
	fs.DurationVar(&c.AuthTimeout, "edge.auth-timeout", 10*time.Second, "wait for the auth message on metrics and logs sockets")
	fs.DurationVar(&c.RegistryTTL, "edge.registry-ttl", registry.DefaultTTL, "how long a dead edge's connections stay listed")
	fs.DurationVar(&c.DrainWindow, "edge.drain-window", DefaultDrainWindow, "on shutdown, spread the sockets' closes (1012) over this long (negative: all at once)")
	fs.Func("edge.allowed-origins", "comma-separated origins (https://host[:port]) whose pages may open Rancher sockets with the R_SESS cookie; the edge's own origin is always allowed",
		func(v string) error {
			for o := range strings.SplitSeq(v, ",") {
				if o = strings.TrimSpace(o); o != "" {
					c.AllowedOrigins = append(c.AllowedOrigins, o)
				}
			}
			return nil
		})
	fs.DurationVar(&c.SaltReplayWindow, "edge.salt-replay-window", salt.DefaultReplayWindow, "how far back formatted_events replays jobs and facts")
	fs.IntVar(&c.SaltMaxJobs, "edge.salt-max-jobs", salt.DefaultMaxJobs, "jobs kept per formatted_events socket")
	fs.IntVar(&c.MaxReplay, "edge.max-replay", socket.DefaultMaxReplay, "events one resume may replay; further behind is too old")
}

// Validate reports settings that cannot work.
func (c Config) Validate() error { return c.WS.Validate() }

// Deps are the edge's collaborators.
type Deps struct {
	NC       *nats.Conn       // required: events arrive here
	Verifier token.Verifier   // required: checks tokens locally
	Latest   monitor.Latest   // the latest metrics sample per server (agentstate); nil: none on connect
	Facts    salt.FactsLister // host facts per server (agentstate); nil: formatted_events uses replayed and live facts
	Log      *slog.Logger
	// Registry is the fleet's connection registry (registry.NewRedis in a cluster); nil: an
	// in-process registry.NewMemory, which lists this edge's connections only.
	Registry registry.Registry
	// Instance names this edge in the registry; empty: a random "edge-..." id.
	Instance string
	// AnnounceConnections publishes connections.create|delete.<principal> events (through
	// eventpub, into the HERALD_EVENTS stream) when sockets open and close. Off, nothing is
	// announced, which is what tests that count events on *.*.* want.
	AnnounceConnections bool
}

// Edge is one gateway instance.
type Edge struct {
	cfg     Config
	log     *slog.Logger
	hub     *hub.Hub
	drp     *drp.Handler
	metrics *monitor.Handler
	logs    *monitor.Handler
	conns   *connections.Handler
	drpAPI  *drpapi.Handler
	chatops *chatops.Handler
	rancher *rancher.Handler
	saltAll *salt.Handler
	saltFmt *salt.Handler
	tracker *registry.Tracker
	epochs  *epochs
	auth    *access.Authenticator
	nc      *nats.Conn
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
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.DrainWindow == 0 {
		cfg.DrainWindow = DefaultDrainWindow
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "edge")
	js, err := jetstream.New(deps.NC)
	if err != nil {
		return nil, fmt.Errorf("edge: jetstream: %w", err)
	}
	ep := newEpochs(js, log, subject.EventStream, subject.TelemetryStream)
	hcfg := cfg.Hub
	hcfg.Epoch, hcfg.StreamReset = ep.get, ep.reset
	h := hub.New(deps.NC, hcfg, log)
	// Whatever is published while the connection is down never reaches this edge: its
	// clients are closed at once, to resume from their last position (here or elsewhere).
	prev := deps.NC.Opts.DisconnectedErrCB
	deps.NC.SetDisconnectErrHandler(func(nc *nats.Conn, err error) {
		if prev != nil {
			prev(nc, err)
		}
		h.Interrupted()
	})
	auth := access.New(deps.Verifier, deps.NC)
	up := wsconn.NewUpgrader(cfg.WS, nil)
	reg := deps.Registry
	if reg == nil {
		reg = registry.NewMemory()
	}
	instance := deps.Instance
	if instance == "" {
		instance = registry.NewInstanceID("edge")
	}
	tcfg := registry.TrackerConfig{Instance: instance, TTL: cfg.RegistryTTL, NC: deps.NC, Log: log}
	if deps.AnnounceConnections {
		tcfg.Publish = func(ctx context.Context, ev *event.Event) error {
			_, err := eventpub.Publish(ctx, js, ev)
			return err
		}
	}
	tracker, err := registry.NewTracker(reg, tcfg)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	rt := &socket.Runtime{Hub: h, Auth: auth, Upgrader: up, Tracker: tracker, Log: log, AuthTimeout: cfg.AuthTimeout,
		JS: js, MaxReplay: cfg.MaxReplay}
	return &Edge{
		cfg: cfg, log: log, hub: h, ready: make(chan struct{}), tracker: tracker, nc: deps.NC, auth: auth, epochs: ep,
		drp:     &drp.Handler{Runtime: rt},
		metrics: &monitor.Handler{Kind: monitor.Metrics, Runtime: rt, Latest: deps.Latest},
		logs:    &monitor.Handler{Kind: monitor.Logs, Runtime: rt},
		conns:   &connections.Handler{Auth: auth, Tracker: tracker, NC: deps.NC, Log: log},
		drpAPI:  &drpapi.Handler{Auth: auth, JS: js, Instance: instance, Log: log},
		chatops: &chatops.Handler{Auth: auth, NC: deps.NC, Tracker: tracker, Latest: deps.Latest, Facts: deps.Facts,
			JobIDs: &agentrpc.JobIDs{}, Log: log},
		rancher: &rancher.Handler{Runtime: rt, AllowedOrigins: cfg.AllowedOrigins},
		saltAll: &salt.Handler{Kind: salt.AllEvents, Runtime: rt},
		saltFmt: &salt.Handler{Kind: salt.FormattedEvents, Runtime: rt,
			JS: js, Facts: deps.Facts, ReplayWindow: cfg.SaltReplayWindow, MaxJobs: cfg.SaltMaxJobs},
	}, nil
}

// Register mounts the edge's WebSocket endpoints.
func (e *Edge) Register(mux *http.ServeMux) {
	mux.Handle("GET "+drp.Path, e.drp)
	mux.Handle("GET "+monitor.MetricsPath, e.metrics)
	mux.Handle("GET "+monitor.LogsPath, e.logs)
	e.conns.Register(mux)
	e.drpAPI.Register(mux)
	e.chatops.Register(mux)
	// One Rancher handler serves the three levels; it reads the level from the path.
	mux.Handle("GET "+rancher.GlobalPath, e.rancher)
	mux.Handle("GET "+rancher.ClusterPath, e.rancher)
	mux.Handle("GET "+rancher.ProjectPath, e.rancher)
	mux.Handle("GET "+salt.AllEventsPath, e.saltAll)
	mux.Handle("GET "+salt.FormattedEventsPath, e.saltFmt)
	mux.Handle("GET "+console.Path, console.Handler())
}

// RegisterGRPC registers ConnectionService on s.
func (e *Edge) RegisterGRPC(s grpc.ServiceRegistrar) {
	heraldv1.RegisterConnectionServiceServer(s, &connections.GRPC{H: e.conns})
}

// Tracker is this edge's connection tracker: its Check is a readiness check (the registry
// is reachable), and tests read its instance id.
func (e *Edge) Tracker() *registry.Tracker { return e.tracker }

// Ready is closed once the edge dispatches events.
func (e *Edge) Ready() <-chan struct{} { return e.ready }

// Hub exposes the fan-out core, for tests and metrics.
func (e *Edge) Hub() *hub.Hub { return e.hub }

// Run dispatches events until ctx ends, then drains: it closes every client with 1012
// "service restart" (reconnect elsewhere), in batches over the drain window (net/http does
// not close hijacked connections), and waits for them, bounded. By then the process's
// readiness has been 503 for its drain delay, so load balancers send no new clients here.
//
// The connection tracker runs alongside and stops last, so the connections closed by the
// shutdown leave the registry at once (a goodbye) rather than expiring.
func (e *Edge) Run(ctx context.Context) error {
	hubCtx, stopHub := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.hub.Run(hubCtx) }()
	epochCtx, stopEpochs := context.WithCancel(context.Background())
	defer stopEpochs()
	go e.epochs.run(epochCtx)
	stopTracker := e.tracker.Start() // kicks, registry writes, connection events
	close(e.ready)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), max(e.cfg.DrainWindow, 0)+e.cfg.ShutdownTimeout)
	defer cancel()
	err := e.hub.Drain(sctx, wsconn.DisconnectRestart, max(e.cfg.DrainWindow, 0))
	stopHub()
	err = errors.Join(err, <-done)
	stopTracker()
	return err
}
