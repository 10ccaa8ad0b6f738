// Package ingest is Herald's publishing service and the home of agents.
//
// Events: it takes events from internal callers (gRPC EventService.Publish, or the in-process
// Publish method) and stores them in the HERALD_EVENTS JetStream stream, from which every edge
// delivers them.
//
// Agents: it holds the agent WebSockets (GET /api/v1/agents/ws, protocol in pkg/agentwire) and
// serves gRPC AgentService. Rules of the agent socket:
//
//   - The first message must be {"type":"auth","api_key"} within Config.AgentAuthTimeout
//     (default 10s). A valid key gets {"type":"auth_success","server_id","message":"Connected
//     successfully"}; a bad one {"type":"error","message":"Invalid or inactive API key"} and close
//     1008 with that reason. Anything else first (bad JSON, another type), or nothing in time,
//     gets {"type":"error","message":"Invalid message format"} (or the auth-required text on
//     timeout) and close 1008 "Authentication required: ...", as the ChatOps backend does.
//   - After auth, bad JSON, an unknown type or an invalid field gets {"type":"error","message":
//     "Invalid message format"} and the socket STAYS OPEN: one bad sample must not cost an agent
//     its connection (and its commands in flight). A frame over Config.AgentMaxFrameBytes closes
//     1009 (wsconn). Agents whose key the auth service cannot check right now get close 1011.
//   - Heartbeats: WebSocket pings every AgentPingInterval; an agent silent for AgentPongWait
//     (pongs and messages both count) is dead: its connection ends and agents.offline.<id> is
//     published. {"type":"ping"} is answered with {"type":"pong"}.
//   - Takeover: a second connection with the key of a connected server TAKES OVER. The ingest
//     accepting it publishes {"conn","at"} on subject.AgentTakeover(server); every ingest
//     holding an older connection for that server closes it with 4002 "replaced by a newer
//     connection for this server" (no offline event: the server is still online). Rejecting the
//     newcomer instead would lock the real agent out behind a half-dead TCP connection after a
//     network blip, until the ping timeout.
//   - Churn: two agents sharing one key would take over from each other forever. Before taking
//     over, a newcomer asks the holder (subject.AgentHolder, on any ingest); after
//     AgentTakeoverLimit takeovers (default 2) within AgentTakeoverWindow (default 1m) the holder
//     refuses newcomers, logging that once, until a window passes without one. A refused agent
//     gets {"type":"error"} saying so and close 4004 (wsconn.DisconnectChurn). One agent
//     reconnecting after a blip takes over as before.
//   - Shape: each agent is answered in the shape it speaks (agentwire.ShapeOf): the first
//     message specific to one shape (nested metrics, ping or command_result: chatops; flat
//     metrics, facts, log, command_response: doc) fixes it; until then the doc shape is used.
//   - Telemetry (metrics, logs, facts) is handled by a bounded worker per connection
//     (telemetryQueue frames), so the read loop, and with it command replies, never waits on
//     the store; a full worker drops frames, counted (TelemetryDropped) and logged.
//   - Metrics are normalized (agentwire.NormalizeMetrics), stored with agentstate.PutMetrics and,
//     when fresh (newer than the stored latest), published on subject.Metrics and checked
//     against the alert thresholds. Replayed or duplicate samples are acknowledged but not
//     republished. Chatops agents get {"type":"metrics_received","status":"ok"} for every
//     sample; doc agents only when the sample carries Herald's "seq" (echoed back).
//   - Alerts: a usage above its threshold for AlertSamples consecutive fresh samples raises one
//     alert (subject.Alerts and alerts.raise.<id>); the first sample back at or under the
//     threshold resolves it (alerts.resolve.<id>). The alert state lives in the agent state
//     store, so it follows an agent to another ingest, and is pruned a day after its last change.
//   - Logs go to subject.Logs; facts to agentstate.PutFacts and agents.facts.<id>; connecting
//     and leaving to agents.online.<id> / agents.offline.<id>.
//
// Commands: AgentService (any ingest) authenticates the caller, then sends an
// agentwire.RPCRequest to subject.AgentRPC(server) with NATS request/reply. The ingest holding
// the agent has that subject subscribed for the connection's life, translates the request to
// the agent's shape, correlates the reply on command_id / request_id and publishes jobs.new.<jid>
// and jobs.ret.<jid>. No responders means the agent is offline: the call fails at once.
package ingest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/heraldhq/herald/pkg/agentrpc"
	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/workqueue"
	"github.com/heraldhq/herald/pkg/wsconn"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// StreamName is the JetStream stream that keeps every event published on the
// subject.EventsWildcard subjects.
const StreamName = subject.EventStream

// Defaults for the zero values of Config.
const (
	DefaultStreamMaxAge   = 24 * time.Hour
	DefaultStreamMaxBytes = 1 << 30 // 1 GiB
	DefaultPublishTimeout = 5 * time.Second

	DefaultAgentAuthTimeout   = 10 * time.Second
	DefaultAgentMaxFrameBytes = 1 << 20 // chatops sends every process in each sample
	DefaultAgentPingInterval  = 20 * time.Second
	DefaultAgentPongWait      = 45 * time.Second
	DefaultAlertThreshold     = 90.0
	DefaultAlertSamples       = 3
	DefaultCommandTimeout     = 30 * time.Second
	DefaultMaxCommandTimeout  = 10 * time.Minute
	DefaultTakeoverWindow     = time.Minute
	DefaultTakeoverLimit      = 2
)

// Config holds the ingest settings. A zero field means its default.
type Config struct {
	// StreamMaxAge is how long HERALD_EVENTS keeps an event, so a reconnecting client can
	// catch up on what it missed. Default 24h.
	StreamMaxAge time.Duration
	// StreamMaxBytes bounds the stream's size on disk; the oldest events go first.
	// Default 1 GiB.
	StreamMaxBytes int64
	// StreamReplicas is the number of copies of the stream in a NATS cluster: 1 for a single
	// node (the all-in-one), 3 on a three-node cluster, so the stream keeps its events and
	// takes writes with one node lost. Default 1.
	StreamReplicas int
	// TelemetryMaxAge is how long HERALD_TELEMETRY keeps a sample, alert or log entry, so a
	// viewer that reconnects can catch up. Default eventstream.DefaultTelemetryMaxAge.
	TelemetryMaxAge time.Duration
	// TelemetryMaxBytes bounds HERALD_TELEMETRY on disk; the oldest go first. Default
	// eventstream.DefaultTelemetryMaxBytes. Its replicas are StreamReplicas.
	TelemetryMaxBytes int64
	// PublishTimeout bounds how long one Publish waits for NATS's acknowledgement, on
	// top of any deadline of the caller. Default 5s.
	PublishTimeout time.Duration

	// AgentAuthTimeout is how long a new agent socket may take to send its auth message.
	// Default 10s.
	AgentAuthTimeout time.Duration
	// AgentMaxFrameBytes is the largest frame read from an agent; more closes 1009.
	// Default 1 MiB.
	AgentMaxFrameBytes int64
	// AgentPingInterval is the WebSocket ping period on agent sockets. Default 20s.
	AgentPingInterval time.Duration
	// AgentPongWait is the silence after which an agent is dead and goes offline: the bound
	// on detecting a killed agent or a cut network. Default 45s.
	AgentPongWait time.Duration

	// AgentTakeoverWindow and AgentTakeoverLimit bound churn: after Limit takeovers of one
	// server's connection within Window, newer connections are refused (4004) until a Window
	// passes without one. Defaults 1m and 2.
	AgentTakeoverWindow time.Duration
	AgentTakeoverLimit  int

	// AlertCPU, AlertMemory and AlertDisk are the usage thresholds in percent. Zero means the
	// default (90); a negative value disables that alert.
	AlertCPU, AlertMemory, AlertDisk float64
	// AlertSamples is how many consecutive samples above a threshold raise an alert. Default 3.
	AlertSamples int

	// CommandTimeout is the wait for an agent's answer when a request sets none. Default 30s.
	CommandTimeout time.Duration
	// MaxCommandTimeout is the largest timeout a request may ask for. Default 10m.
	MaxCommandTimeout time.Duration

	// RegistryTTL bounds how long this ingest's agent connections stay listed after it dies
	// without a goodbye. Default 30s.
	RegistryTTL time.Duration
}

// RegisterFlags binds c to fs under the "ingest." prefix.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.StreamMaxAge, "ingest.stream-max-age", DefaultStreamMaxAge,
		"how long the "+StreamName+" stream keeps events")
	fs.Int64Var(&c.StreamMaxBytes, "ingest.stream-max-bytes", DefaultStreamMaxBytes,
		"size bound of the "+StreamName+" stream in bytes; the oldest events are dropped first")
	fs.IntVar(&c.StreamReplicas, "ingest.stream-replicas", 1,
		"copies of the "+StreamName+" stream in a NATS cluster (3 on a three-node cluster; at most the number of nodes)")
	fs.DurationVar(&c.TelemetryMaxAge, "ingest.telemetry-max-age", eventstream.DefaultTelemetryMaxAge,
		"how long the "+subject.TelemetryStream+" stream keeps samples, alerts and log entries for viewers that resume")
	fs.Int64Var(&c.TelemetryMaxBytes, "ingest.telemetry-max-bytes", eventstream.DefaultTelemetryMaxBytes,
		"size bound of the "+subject.TelemetryStream+" stream in bytes; the oldest are dropped first")
	fs.DurationVar(&c.PublishTimeout, "ingest.publish-timeout", DefaultPublishTimeout,
		"how long a publish waits for NATS to acknowledge an event")
	fs.DurationVar(&c.AgentAuthTimeout, "ingest.agent-auth-timeout", DefaultAgentAuthTimeout,
		"how long a new agent socket may take to send its auth message")
	fs.Int64Var(&c.AgentMaxFrameBytes, "ingest.agent-max-frame-bytes", DefaultAgentMaxFrameBytes,
		"largest WebSocket frame accepted from an agent; larger closes 1009")
	fs.DurationVar(&c.AgentPingInterval, "ingest.agent-ping-interval", DefaultAgentPingInterval,
		"WebSocket ping period on agent sockets")
	fs.DurationVar(&c.AgentPongWait, "ingest.agent-pong-wait", DefaultAgentPongWait,
		"silence after which an agent counts as dead and goes offline")
	fs.DurationVar(&c.AgentTakeoverWindow, "ingest.agent-takeover-window", DefaultTakeoverWindow,
		"window over which takeovers of one server's agent connection are counted")
	fs.IntVar(&c.AgentTakeoverLimit, "ingest.agent-takeover-limit", DefaultTakeoverLimit,
		"takeovers within the window after which newer connections are refused for a window (two agents on one key)")
	fs.Float64Var(&c.AlertCPU, "ingest.alert-cpu", DefaultAlertThreshold,
		"CPU usage percent above which samples count towards an alert (negative: off)")
	fs.Float64Var(&c.AlertMemory, "ingest.alert-memory", DefaultAlertThreshold,
		"memory usage percent above which samples count towards an alert (negative: off)")
	fs.Float64Var(&c.AlertDisk, "ingest.alert-disk", DefaultAlertThreshold,
		"disk usage percent (fullest disk) above which samples count towards an alert (negative: off)")
	fs.IntVar(&c.AlertSamples, "ingest.alert-samples", DefaultAlertSamples,
		"consecutive samples above a threshold that raise an alert")
	fs.DurationVar(&c.CommandTimeout, "ingest.command-timeout", DefaultCommandTimeout,
		"wait for an agent's answer when a request sets no timeout")
	fs.DurationVar(&c.MaxCommandTimeout, "ingest.command-max-timeout", DefaultMaxCommandTimeout,
		"largest timeout a command or docker request may ask for")
	fs.DurationVar(&c.RegistryTTL, "ingest.registry-ttl", registry.DefaultTTL,
		"how long a dead ingest's agent connections stay listed")
}

// Validate reports a setting that cannot work. Zero values are valid (defaults).
func (c Config) Validate() error {
	switch {
	case c.StreamMaxAge < 0:
		return fmt.Errorf("ingest.stream-max-age: must not be negative, got %s", c.StreamMaxAge)
	case c.StreamMaxBytes < 0:
		return fmt.Errorf("ingest.stream-max-bytes: must not be negative, got %d", c.StreamMaxBytes)
	case c.StreamReplicas < 0 || c.StreamReplicas > 5:
		return fmt.Errorf("ingest.stream-replicas: must be between 1 and 5, got %d", c.StreamReplicas)
	case c.TelemetryMaxAge < 0 || c.TelemetryMaxBytes < 0:
		return errors.New("ingest.telemetry-max-age, ingest.telemetry-max-bytes: must not be negative")
	case c.PublishTimeout < 0:
		return fmt.Errorf("ingest.publish-timeout: must not be negative, got %s", c.PublishTimeout)
	case c.AgentAuthTimeout < 0:
		return fmt.Errorf("ingest.agent-auth-timeout: must not be negative, got %s", c.AgentAuthTimeout)
	case c.AgentMaxFrameBytes < 0:
		return fmt.Errorf("ingest.agent-max-frame-bytes: must not be negative, got %d", c.AgentMaxFrameBytes)
	case c.AgentPingInterval < 0 || c.AgentPongWait < 0:
		return errors.New("ingest.agent-ping-interval, ingest.agent-pong-wait: must not be negative")
	case c.AlertCPU > 100 || c.AlertMemory > 100 || c.AlertDisk > 100:
		return errors.New("ingest.alert-cpu, ingest.alert-memory, ingest.alert-disk: must be at most 100 (percent)")
	case c.AgentTakeoverWindow < 0 || c.AgentTakeoverLimit < 0:
		return errors.New("ingest.agent-takeover-window, ingest.agent-takeover-limit: must not be negative")
	case c.AlertSamples < 0:
		return fmt.Errorf("ingest.alert-samples: must not be negative, got %d", c.AlertSamples)
	case c.RegistryTTL < 0:
		return fmt.Errorf("ingest.registry-ttl: must not be negative, got %s", c.RegistryTTL)
	case c.CommandTimeout < 0 || c.MaxCommandTimeout < 0:
		return errors.New("ingest.command-timeout, ingest.command-max-timeout: must not be negative")
	}
	d := c.withDefaults()
	if d.AgentPingInterval >= d.AgentPongWait {
		return fmt.Errorf("ingest.agent-ping-interval %s must be shorter than ingest.agent-pong-wait %s",
			d.AgentPingInterval, d.AgentPongWait)
	}
	if d.CommandTimeout > d.MaxCommandTimeout {
		return fmt.Errorf("ingest.command-timeout %s must not exceed ingest.command-max-timeout %s",
			d.CommandTimeout, d.MaxCommandTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.StreamMaxAge == 0 {
		c.StreamMaxAge = DefaultStreamMaxAge
	}
	if c.StreamMaxBytes == 0 {
		c.StreamMaxBytes = DefaultStreamMaxBytes
	}
	if c.TelemetryMaxAge == 0 {
		c.TelemetryMaxAge = eventstream.DefaultTelemetryMaxAge
	}
	if c.TelemetryMaxBytes == 0 {
		c.TelemetryMaxBytes = eventstream.DefaultTelemetryMaxBytes
	}
	if c.StreamReplicas == 0 {
		c.StreamReplicas = 1
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.AgentAuthTimeout, DefaultAgentAuthTimeout)
	def(&c.AgentPingInterval, DefaultAgentPingInterval)
	def(&c.AgentPongWait, DefaultAgentPongWait)
	def(&c.CommandTimeout, DefaultCommandTimeout)
	def(&c.MaxCommandTimeout, DefaultMaxCommandTimeout)
	def(&c.AgentTakeoverWindow, DefaultTakeoverWindow)
	if c.AgentTakeoverLimit == 0 {
		c.AgentTakeoverLimit = DefaultTakeoverLimit
	}
	if c.AgentMaxFrameBytes == 0 {
		c.AgentMaxFrameBytes = DefaultAgentMaxFrameBytes
	}
	for _, t := range []*float64{&c.AlertCPU, &c.AlertMemory, &c.AlertDisk} {
		if *t == 0 {
			*t = DefaultAlertThreshold
		}
	}
	if c.AlertSamples == 0 {
		c.AlertSamples = DefaultAlertSamples
	}
	return c
}

// Deps are the collaborators a Service uses; the process owns them.
type Deps struct {
	// NC is the NATS connection events are published on. Required.
	NC *nats.Conn
	// Log receives the service's logs. Nil discards them.
	Log *slog.Logger
	// Verifier checks the tokens of AgentService callers (locally, with auth's public key).
	// Nil refuses every AgentService call as unauthenticated.
	Verifier token.Verifier
	// State keeps the latest sample and the facts of each server. Nil: an in-process
	// agentstate.NewMemory (all-in-one); pass agentstate.NewRedis when several ingests run.
	State agentstate.Store
	// APIKeys verifies agents' API keys. Nil: the auth service over NC (authwire).
	APIKeys APIKeyVerifier
	// Registry is the fleet's connection registry, where agent sockets are listed. Nil: an
	// in-process registry.NewMemory.
	Registry registry.Registry
	// Instance names this ingest in the registry; empty: a random "ingest-..." id.
	Instance string
	// AnnounceConnections publishes connections.create|delete.<principal> events for agent
	// sockets. Off, nothing is announced.
	AnnounceConnections bool
}

// Service publishes events to NATS JetStream and holds agent sockets. Create it with New and
// start it with Run; Publish waits until Run has made sure the stream exists.
type Service struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	tele     jetstream.JetStream // publishes telemetry asynchronously; see publishTelemetry
	log      *slog.Logger
	ready    chan struct{} // closed by Run once the stream exists
	verifier token.Verifier
	state    agentstate.Store
	apiKeys  APIKeyVerifier
	upgrader *wsconn.Upgrader
	// alertRules are the thresholds; each connection's telemetry worker runs them.
	alertRules alertRules
	jids       agentrpc.JobIDs
	agents     agentSet
	events     *workqueue.Queue[*event.Event] // agent events, published by Run's worker
	tracker    *registry.Tracker
	// telemetryDropped counts agent frames dropped by full telemetry workers.
	telemetryDropped atomic.Uint64
	// telemetryLost counts samples, alerts and log entries the telemetry stream did not store.
	telemetryLost atomic.Uint64
}

// New validates cfg and wires the service. It starts nothing and does no I/O.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.NC == nil {
		return nil, errors.New("ingest: Deps.NC is required")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(deps.NC)
	if err != nil {
		return nil, fmt.Errorf("ingest: jetstream: %w", err)
	}
	cfg = cfg.withDefaults()
	s := &Service{
		cfg:      cfg,
		nc:       deps.NC,
		js:       js,
		log:      log.With("component", "ingest"),
		ready:    make(chan struct{}),
		verifier: deps.Verifier,
		state:    deps.State,
		apiKeys:  deps.APIKeys,
		alertRules: alertRules{
			thresholds: map[string]float64{"cpu": cfg.AlertCPU, "memory": cfg.AlertMemory, "disk": cfg.AlertDisk},
			samples:    cfg.AlertSamples,
		},
		upgrader: wsconn.NewUpgrader(wsconn.Config{
			MaxMessageBytes: cfg.AgentMaxFrameBytes,
			PingInterval:    cfg.AgentPingInterval,
			PongWait:        cfg.AgentPongWait,
		}, nil), // agents are not browsers: the key comes in a message, no cookie to protect
	}
	if s.tele, err = s.telemetryPublisher(); err != nil {
		return nil, err
	}
	s.events = workqueue.New("agent event", eventQueue, s.log, s.publishEvent)
	if s.state == nil {
		s.state = agentstate.NewMemory()
	}
	if s.apiKeys == nil {
		s.apiKeys = natsKeyVerifier{nc: deps.NC}
	}
	s.agents.init()
	reg := deps.Registry
	if reg == nil {
		reg = registry.NewMemory()
	}
	instance := deps.Instance
	if instance == "" {
		instance = registry.NewInstanceID("ingest")
	}
	tcfg := registry.TrackerConfig{Instance: instance, TTL: cfg.RegistryTTL, NC: deps.NC, Log: s.log}
	if deps.AnnounceConnections {
		tcfg.Publish = func(ctx context.Context, ev *event.Event) error {
			_, err := s.Publish(ctx, ev)
			return err
		}
	}
	if s.tracker, err = registry.NewTracker(reg, tcfg); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return s, nil
}

// Tracker is this ingest's connection tracker: its Check is a readiness check (the registry
// is reachable).
func (s *Service) Tracker() *registry.Tracker { return s.tracker }

// TelemetryDropped is the number of agent frames (metrics, logs, facts) dropped because an
// agent's telemetry worker was full.
func (s *Service) TelemetryDropped() uint64 { return s.telemetryDropped.Load() }

// RegisterGRPC registers EventService and AgentService on s.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	heraldv1.RegisterEventServiceServer(r, &eventServer{svc: s})
	heraldv1.RegisterAgentServiceServer(r, &agentServer{svc: s})
}

// Paths of the agent routes.
const (
	AgentSocketPath = "/api/v1/agents/ws"
	APIKeyMePath    = "/api/v1/api-keys/me"
)

// Register adds the agent socket (GET /api/v1/agents/ws) and the key check chatops' agent
// makes before dialing (GET /api/v1/api-keys/me) to mux.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+AgentSocketPath, s.serveAgent)
	mux.HandleFunc("GET "+APIKeyMePath, s.serveAPIKeyMe)
}

// Ready is closed once Run has ensured the event stream and Publish can succeed.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run ensures the HERALD_EVENTS stream exists with the configured limits, publishes the
// agents' events, and blocks until ctx is done. While NATS cannot be reached it retries
// (logging each failure); a configuration that JetStream rejects ends Run with the error.
// On the way out it closes every agent socket with 1001, waits for them, and publishes the
// events still queued (bounded by PublishTimeout).
func (s *Service) Run(ctx context.Context) error {
	evCtx, stopEvents := context.WithCancel(context.Background())
	eventsDone := make(chan struct{})
	go func() { defer close(eventsDone); s.events.Run(evCtx, s.cfg.PublishTimeout) }()
	stopTracker := s.tracker.Start() // kicks, registry writes, connection events
	defer func() {
		s.agents.shutdown(s.log)
		stopTracker() // after the agents left: their entries go with a goodbye
		stopEvents()  // last: the offline events of the agents just closed go out
		<-eventsDone
	}()
	if err := s.ensureStream(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	close(s.ready)
	s.log.Info("event stream ready", "stream", StreamName)
	<-ctx.Done()
	// Every Publish waits for its own acknowledgement, and the process drains the NATS
	// connection it owns; the deferred shutdown ends the agent sockets first.
	return nil
}
