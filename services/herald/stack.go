// Package herald is the all-in-one composition root: one process with an
// embedded NATS server and every service, each HTTP route on one mux and
// each gRPC service on one server. It is what `make run` starts and what
// the end-to-end tests start on 127.0.0.1:0.
package herald

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/services/auth"
	"github.com/heraldhq/herald/services/edge"
	"github.com/heraldhq/herald/services/ingest"
)

// Config is the whole process's configuration.
type Config struct {
	HTTPAddr string // every HTTP and WebSocket route
	GRPCAddr string // every gRPC service, with reflection
	App      app.Config
	NATS     natsx.EmbeddedConfig
	Auth     auth.Config
	Ingest   ingest.Config
	Edge     edge.Config
	// RedisURL, when set, keeps users and API keys, agent state and the connection registry
	// in Redis, shared with other Herald processes; empty keeps them in memory.
	RedisURL string
	// Instance names this process in the connection registry (its edge is
	// "<instance>-edge", its ingest "<instance>-ingest"); empty: a random id.
	Instance string
}

// RegisterFlags registers every flag of the process on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTPAddr, "http.addr", "127.0.0.1:8080", "HTTP and WebSocket listen address")
	fs.StringVar(&c.GRPCAddr, "grpc.addr", "127.0.0.1:9090", "gRPC listen address")
	c.App.RegisterFlags(fs)
	c.NATS.RegisterFlags(fs)
	c.Auth.RegisterFlags(fs)
	c.Ingest.RegisterFlags(fs)
	c.Edge.RegisterFlags(fs)
	fs.StringVar(&c.RedisURL, "redis.url", "", "Redis URL (redis://[:password@]host:6379/0) for users, API keys, agent state and the connection registry; empty: memory")
	fs.StringVar(&c.Instance, "instance", "", "this process's name in the connection registry (empty: random)")
}

// Validate reports every setting that cannot work.
func (c Config) Validate() error {
	var redisErr error
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			redisErr = fmt.Errorf("redis.url: %w", err)
		}
	}
	return errors.Join(c.App.Validate(), c.NATS.Validate(), c.Auth.Validate(), c.Ingest.Validate(), c.Edge.Validate(), redisErr)
}

// Stack is one all-in-one Herald. New checks the configuration; Run starts
// everything, blocks until ctx is done, and stops it all in reverse order.
type Stack struct {
	cfg   Config
	log   *slog.Logger
	http  *app.HTTPServer
	grpc  *app.GRPCServer
	ready chan struct{}

	mu     sync.Mutex
	nats   *server.Server
	auth   *auth.Service
	edge   *edge.Edge
	devKey string
}

// DevServerID is the server id of the API key the stack creates at start
// while API keys live in memory, so a newcomer can start an agent at once.
const DevServerID = "dev-server"

// New checks cfg. It starts nothing. A nil log discards.
func New(cfg Config, log *slog.Logger) (*Stack, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stack{
		cfg:   cfg,
		log:   log,
		http:  &app.HTTPServer{Addr: cfg.HTTPAddr, Log: log},
		grpc:  &app.GRPCServer{Addr: cfg.GRPCAddr, Log: log},
		ready: make(chan struct{}),
	}, nil
}

// Ready is closed once every component runs and the listeners are bound.
func (s *Stack) Ready() <-chan struct{} { return s.ready }

// HTTPAddr is the bound HTTP address (host:port), valid after Ready.
func (s *Stack) HTTPAddr() string { return s.http.BoundAddr() }

// GRPCAddr is the bound gRPC address (host:port), valid after Ready.
func (s *Stack) GRPCAddr() string { return s.grpc.BoundAddr() }

// NATSServer is the embedded NATS server, valid after Ready; tests use it
// to count subscriptions or to connect a client of their own.
func (s *Stack) NATSServer() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nats
}

// Auth is the auth service, valid after Ready; tests use its Verifier and
// PublicKey.
func (s *Stack) Auth() *auth.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth
}

// DevAPIKey is the API key made at start for server DevServerID, valid
// after Ready.
func (s *Stack) DevAPIKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.devKey
}

// Edge is the edge service, valid after Ready; tests use its Hub.
func (s *Stack) Edge() *edge.Edge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.edge
}

// Run starts the embedded NATS server and every service, serves until ctx
// is done, then stops them in reverse: readiness 503, listeners, services,
// their NATS connections, the NATS server.
func (s *Stack) Run(ctx context.Context) error {
	ns, err := natsx.Embedded(s.cfg.NATS)
	if err != nil {
		return err
	}
	w := &wiring{ns: ns, log: s.log, drainTimeout: s.cfg.App.ShutdownTimeout}
	w.add("nats-server", app.RunnerFunc(func(ctx context.Context) error {
		<-ctx.Done()
		natsx.Shutdown(ns)
		return nil
	}))

	// Shared state: Redis when configured, else memory, one store per kind for the process.
	var (
		authStore auth.Store
		state     agentstate.Store  = agentstate.NewMemory()
		reg       registry.Registry = registry.NewMemory()
	)
	if s.cfg.RedisURL != "" {
		opts, _ := redis.ParseURL(s.cfg.RedisURL) // checked by Validate
		rdb := redis.NewClient(opts)
		w.add("redis-client", app.RunnerFunc(func(ctx context.Context) error {
			<-ctx.Done()
			return rdb.Close()
		}))
		authStore = auth.NewRedisStore(rdb, auth.DefaultRedisPrefix)
		state = agentstate.NewRedis(rdb, agentstate.DefaultRedisPrefix)
		reg = registry.NewRedis(rdb, registry.DefaultRedisPrefix)
	}
	instance := s.cfg.Instance
	if instance == "" {
		instance = registry.NewInstanceID("herald")
	}

	authNC, ingestNC, edgeNC := w.conn("auth"), w.conn("ingest"), w.conn("edge")
	authSvc, err := auth.New(s.cfg.Auth, auth.Deps{NC: authNC, Log: s.log, Store: authStore})
	w.check(err)
	w.add("auth", authSvc)
	// The auth store is memory here, so keys die with the process: make a
	// fresh dev key each start (printed by Banner). Skip this once a
	// persistent key store is configured.
	var devKey auth.NewAPIKey
	if authSvc != nil {
		devKey, err = authSvc.CreateAPIKey(ctx, DevServerID, "dev key made by make run")
		w.check(err)
	}
	var verifier token.Verifier
	if authSvc != nil {
		verifier = authSvc.Verifier() // in-process: no key fetch, same key
	}
	// Ingest records each server's latest sample and facts, and the edge reads them for new
	// viewers, from the same store; both list their connections in the same registry.
	ingestSvc, err := ingest.New(s.cfg.Ingest, ingest.Deps{NC: ingestNC, Verifier: verifier, State: state, Log: s.log,
		Registry: reg, Instance: instance + "-ingest", AnnounceConnections: true})
	w.check(err)
	w.add("ingest", ingestSvc)
	edgeSvc, err := edge.New(s.cfg.Edge, edge.Deps{NC: edgeNC, Verifier: verifier, Latest: state, Facts: state, Log: s.log,
		Registry: reg, Instance: instance + "-edge", AnnounceConnections: true})
	w.check(err)
	w.add("edge", edgeSvc)
	if w.err != nil {
		w.abort()
		return w.err
	}

	mux := http.NewServeMux()
	gs := grpc.NewServer()
	health := &app.Health{DrainDelay: s.cfg.App.DrainDelay}
	// Readiness proves delivery: each service's own NATS connection makes a round trip, and
	// the event stream takes writes.
	for _, c := range []struct {
		name string
		nc   *nats.Conn
	}{{"auth", authNC}, {"ingest", ingestNC}, {"edge", edgeNC}} {
		probe, err := natsx.ServeHealth(c.nc, "herald-"+c.name)
		if err != nil {
			w.abort()
			return err
		}
		health.AddCheck(c.name+" nats", probe.Check)
	}
	health.AddCheck("ingest event stream", ingestSvc.CheckStream)
	metrics.Register(mux)
	authSvc.Register(mux)
	authSvc.RegisterGRPC(gs)
	ingestSvc.Register(mux)
	ingestSvc.RegisterGRPC(gs)
	edgeSvc.Register(mux)
	edgeSvc.RegisterGRPC(gs)
	// Without the registry both keep serving (issue 4): degraded, not unready.
	health.AddDegradedCheck("edge connection registry", edgeSvc.Tracker().Check)
	health.AddDegradedCheck("ingest connection registry", ingestSvc.Tracker().Check)
	health.Register(mux)
	reflection.Register(gs)
	// Every plain request through this process is listed while in flight (issue 4).
	s.http.Handler, s.grpc.Server = edgeSvc.TrackREST(mux), gs

	s.mu.Lock()
	s.nats, s.auth, s.edge, s.devKey = ns, authSvc, edgeSvc, devKey.Key
	s.mu.Unlock()
	w.add("grpc", s.grpc)
	w.add("http", s.http)
	w.add("health", health)
	w.add("ready", app.RunnerFunc(func(ctx context.Context) error {
		close(s.ready)
		<-ctx.Done()
		return nil
	}))
	return s.cfg.App.Run(ctx, s.log, w.runners...)
}

// wiring collects runners in start order while the services are built,
// and remembers the first error so the building code stays linear.
type wiring struct {
	ns           *server.Server
	log          *slog.Logger
	drainTimeout time.Duration
	runners      []app.Named
	conns        []*nats.Conn
	err          error
}

func (w *wiring) add(name string, r app.Runner) {
	if w.err == nil {
		w.runners = append(w.runners, app.Named{Name: name, Runner: r})
	}
}

func (w *wiring) check(err error) {
	if w.err == nil {
		w.err = err
	}
}

// conn opens an in-process connection for one service and adds a runner
// that drains it; added before the service, it is drained after the
// service stopped. Each service has its own connection so that a slow
// consumer in one cannot stall another.
func (w *wiring) conn(name string) *nats.Conn {
	if w.err != nil {
		return nil
	}
	nc, err := natsx.ConnectInProcess(w.ns, "herald-"+name, w.log)
	if err != nil {
		w.err = err
		return nil
	}
	w.conns = append(w.conns, nc)
	w.add("nats-conn-"+name, app.RunnerFunc(func(ctx context.Context) error {
		<-ctx.Done()
		return natsx.Drain(nc, w.drainTimeout)
	}))
	return nc
}

// abort undoes a failed build: nothing runs yet, so close what was opened.
func (w *wiring) abort() {
	for _, nc := range w.conns {
		nc.Close()
	}
	natsx.Shutdown(w.ns)
}

// Banner tells a person what is running and how to reach it; call it after
// Ready.
func (s *Stack) Banner(w io.Writer) {
	h, g := s.HTTPAddr(), s.GRPCAddr()
	fmt.Fprintf(w, `
Herald is running (embedded NATS, auth, ingest, edge). Ctrl-C stops it; a second Ctrl-C exits at once.
  HTTP       http://%[1]s   (health: /healthz, /readyz)
  WebSocket  ws://%[1]s/api/v3/ws   (Digital Rebar dialect)
             ws://%[1]s/api/v1/ws/metrics/<server_id>, .../logs/<server_id>   (monitoring, token in the first message)
             ws://%[1]s/api/v1/agents/ws   (agents, API key in the first message)
             ws://%[1]s/v3/subscribe, /v3/clusters/<id>/subscribe, /v3/projects/<id>/subscribe   (Rancher)
             ws://%[1]s/all_events/<token>, /formatted_events/<token>   (Salt; token from POST /login)
  REST       http://%[1]s/api/v3/connections   (every live connection in the fleet)
  gRPC       %[2]s   (reflection on: grpcurl -plaintext %[2]s list)
Log in (the admin password is HERALD_ADMIN_PASSWORD, or the generated one logged above):
  curl -s -X POST http://%[1]s/api/v1/auth/login -d '{"username":"admin","password":"..."}'
Start an agent (dev API key for server %[3]s, made at start, gone at exit):
  cd services/agent && go run ./cmd/herald-agent -url ws://%[1]s/api/v1/agents/ws -api-key %[4]s
Manage API keys: go run ./services/auth/cmd/herald-keys -addr %[2]s -user admin -password ... list

`, h, g, DevServerID, s.DevAPIKey())
}
