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
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/services/auth"
	"github.com/heraldhq/herald/services/edge"
	"github.com/heraldhq/herald/services/ingest"
)

// Config is the whole process's configuration.
type Config struct {
	// Listen is where every HTTP and WebSocket route and every gRPC service (with
	// reflection) is served, with TLS when configured.
	Listen app.ListenConfig
	App    app.Config
	NATS   natsx.EmbeddedConfig
	Auth   auth.Config
	Ingest ingest.Config
	Edge   edge.Config
	// RedisURL, when set, keeps agent state and the connection registry in Redis, shared with
	// other Herald processes; empty keeps them in memory. Users and keys are always in the
	// embedded JetStream.
	RedisURL string
	// Instance names this process in the connection registry (its edge is
	// "<instance>-edge", its ingest "<instance>-ingest"); empty: a random id.
	Instance string
}

// RegisterFlags registers every flag of the process on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Listen.RegisterFlags(fs, "127.0.0.1:8080", "127.0.0.1:9090")
	c.Listen.RegisterDevFlags(fs)
	c.App.RegisterFlags(fs)
	c.NATS.RegisterFlags(fs)
	c.Auth.RegisterFlags(fs)
	c.Ingest.RegisterFlags(fs)
	c.Edge.RegisterFlags(fs)
	fs.StringVar(&c.RedisURL, "redis.url", "", "Redis URL (redis://[:password@]host:6379/0) for agent state and the connection registry; empty: memory")
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
	return errors.Join(c.Listen.Validate(), c.App.Validate(), c.NATS.Validate(), c.Auth.Validate(), c.Ingest.Validate(), c.Edge.Validate(), redisErr)
}

// Stack is one all-in-one Herald. New checks the configuration; Run starts
// everything, blocks until ctx is done, and stops it all in reverse order.
type Stack struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}

	mu     sync.Mutex
	front  *app.Front
	nats   *server.Server
	auth   *auth.Service
	edge   *edge.Edge
	devKey string // the secret, when this start made the key
	devID  string // the key's id
}

// DevServerID is the server id of the API key the stack makes at start, so a newcomer can
// start an agent at once.
const DevServerID = "dev-server"

// devKeyName labels the dev key, so a start with a persistent key store
// finds the one an earlier start made.
const devKeyName = "dev key made by make run"

// New checks cfg. It starts nothing. A nil log discards.
func New(cfg Config, log *slog.Logger) (*Stack, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stack{cfg: cfg, log: log, ready: make(chan struct{})}, nil
}

// Ready is closed once every component runs and the listeners are bound.
func (s *Stack) Ready() <-chan struct{} { return s.ready }

// HTTPAddr is the bound HTTP address (host:port), valid after Ready.
func (s *Stack) HTTPAddr() string {
	if f := s.Front(); f != nil {
		return f.HTTP.BoundAddr()
	}
	return ""
}

// GRPCAddr is the bound gRPC address (host:port), valid after Ready.
func (s *Stack) GRPCAddr() string {
	if f := s.Front(); f != nil {
		return f.GRPC.BoundAddr()
	}
	return ""
}

// Front is what the process serves on (listeners, certificate, health), valid after Ready;
// tests read its Certificate to trust the development one.
func (s *Stack) Front() *app.Front {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.front
}

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
// after Ready. It is empty when a persistent key store (Redis) already held
// the dev key: its secret was shown by the start that made it.
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
		state agentstate.Store  = agentstate.NewMemory()
		reg   registry.Registry = registry.NewMemory()
	)
	if s.cfg.RedisURL != "" {
		opts, _ := redis.ParseURL(s.cfg.RedisURL) // checked by Validate
		rdb := redis.NewClient(opts)
		w.add("redis-client", app.RunnerFunc(func(ctx context.Context) error {
			<-ctx.Done()
			return rdb.Close()
		}))
		state = agentstate.NewRedis(rdb, agentstate.DefaultRedisPrefix)
		reg = registry.NewRedis(rdb, registry.DefaultRedisPrefix)
	}
	instance := s.cfg.Instance
	if instance == "" {
		instance = registry.NewInstanceID("herald")
	}

	// Users, API keys, signing keys and revocations: the embedded JetStream's key-value
	// buckets, so they survive a restart like the events do; Redis holds none of them.
	authNC, ingestNC, edgeNC := w.conn("auth"), w.conn("ingest"), w.conn("edge")
	var authJS jetstream.JetStream
	if authNC != nil {
		authJS, err = jetstream.New(authNC)
		w.check(err)
	}
	authSvc, err := auth.New(s.cfg.Auth, auth.Deps{NC: authNC, JetStream: authJS, Log: s.log})
	w.check(err)
	w.add("auth", authSvc)
	var devKey auth.NewAPIKey
	if authSvc != nil {
		devKey, err = ensureDevKey(ctx, authSvc)
		w.check(err)
	}
	var verifier token.Verifier
	if authSvc != nil {
		verifier = authSvc.Verifier() // in-process: same keys and revocations, no watch delay
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

	front, err := app.NewFront(s.cfg.Listen, s.log, authSvc, ingestSvc, edgeSvc)
	if err != nil {
		w.abort()
		return err
	}
	front.Health.DrainDelay = s.cfg.App.DrainDelay
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
		front.Health.AddCheck(c.name+" nats", probe.Check)
	}
	front.Health.AddCheck("ingest event stream", ingestSvc.CheckStream)
	// Without the registry both keep serving: degraded, not unready.
	front.Health.AddDegradedCheck("edge connection registry", edgeSvc.Tracker().Check)
	front.Health.AddDegradedCheck("ingest connection registry", ingestSvc.Tracker().Check)
	// Every plain request through this process is listed while in flight.
	front.HTTP.Handler = edgeSvc.TrackREST(front.Mux)

	s.mu.Lock()
	s.nats, s.auth, s.edge, s.devKey, s.devID, s.front = ns, authSvc, edgeSvc, devKey.Key, devKey.ID, front
	s.mu.Unlock()
	for _, r := range front.Runners() {
		w.add(r.Name, r.Runner)
	}
	w.add("ready", app.RunnerFunc(func(ctx context.Context) error {
		close(s.ready)
		<-ctx.Done()
		return nil
	}))
	return s.cfg.App.Run(ctx, s.log, w.runners...)
}

// ensureDevKey makes the dev API key for DevServerID, printed by the banner. Keys live in
// JetStream and outlive the process, and only a key's hash is stored, so an earlier start's
// key cannot be shown again: each start revokes the dev key it finds and makes a new one.
// There is one active dev key however often the stack starts.
func ensureDevKey(ctx context.Context, a *auth.Service) (auth.NewAPIKey, error) {
	keys, err := a.ListAPIKeys(ctx, DevServerID)
	if err != nil {
		return auth.NewAPIKey{}, fmt.Errorf("dev api key: %w", err)
	}
	for _, k := range keys {
		if !k.Revoked && k.Name == devKeyName {
			if err := a.RevokeAPIKey(ctx, k.ID); err != nil {
				return auth.NewAPIKey{}, fmt.Errorf("dev api key: revoke the previous one: %w", err)
			}
		}
	}
	k, err := a.CreateAPIKey(ctx, DevServerID, devKeyName)
	if err != nil {
		return auth.NewAPIKey{}, fmt.Errorf("dev api key: %w", err)
	}
	return k, nil
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
	f := s.Front()
	h, g := s.HTTPAddr(), s.GRPCAddr()
	web, ws, grpcurl, extra := "http", "ws", "-plaintext", ""
	if f.TLS() {
		web, ws = "https", "wss"
		// curl -k and DRP's clients skip verification; pin the fingerprint to check it.
		extra = fmt.Sprintf("  TLS        certificate SHA-256 %s\n", f.Certificate().Fingerprint())
	}
	if f.GRPCTLS() {
		grpcurl = "-insecure"
	}
	if s.cfg.NATS.Listen {
		// The port is the server's choice; herald-load -publish nats and the nats CLI need it.
		extra += fmt.Sprintf("  NATS       %s   (-nats.listen)\n", s.NATSServer().ClientURL())
	}
	fmt.Fprintf(w, `
Herald is running (embedded NATS, auth, ingest, edge). Ctrl-C stops it; a second Ctrl-C exits at once.
  HTTP       %[5]s://%[1]s   (health: /healthz, /readyz)
  Console    %[5]s://%[1]s/console/   (log in as admin)
%[8]s  WebSocket  %[6]s://%[1]s/api/v3/ws   (Digital Rebar dialect)
             %[6]s://%[1]s/api/v1/ws/metrics/<server_id>, .../logs/<server_id>   (monitoring, token in the first message)
             %[6]s://%[1]s/api/v1/agents/ws   (agents, API key in the first message)
             %[6]s://%[1]s/v3/subscribe, /v3/clusters/<id>/subscribe, /v3/projects/<id>/subscribe   (Rancher)
             %[6]s://%[1]s/all_events/<token>, /formatted_events/<token>   (Salt; token from POST /login)
  REST       %[5]s://%[1]s/api/v3/connections   (every live connection in the fleet)
  gRPC       %[2]s   (reflection on: grpcurl %[7]s %[2]s list)
Log in (the admin password is HERALD_ADMIN_PASSWORD, or the generated one logged above):
  curl -sk -X POST %[5]s://%[1]s/api/v1/auth/login -d '{"username":"admin","password":"..."}'
%[3]s
The CLI: go run ./services/herald/cmd/herald login -u admin, then herald watch, run, keys, ... (herald --help)

`, h, g, s.agentHint(ws+"://"+h), s.DevAPIKey(), web, ws, grpcurl, extra)
}

// agentHint is the Banner's line on starting an agent with the dev key; base is the edge's
// ws:// or wss:// address.
func (s *Stack) agentHint(base string) string {
	s.mu.Lock()
	key := s.devKey
	s.mu.Unlock()
	return fmt.Sprintf("Start an agent (dev API key for server %s, made at this start; the previous start's is revoked):\n"+
		"  cd services/agent && go run ./cmd/herald-agent -url %s/api/v1/agents/ws -api-key %s -enable-commands", DevServerID, base, key)
}
