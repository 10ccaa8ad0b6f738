// Package agent is Herald's host agent: it runs on a monitored machine and
// keeps one WebSocket to an ingest (GET /api/v1/agents/ws), speaking the
// document's protocol (the ChatOps agent API, see the README) plus Herald's extensions (pkg/agentwire).
//
// Over that connection it sends a metrics sample every interval (CPU,
// memory, every mounted partition, every network interface), the host's
// facts once per connection, and the lines appended to the log files it
// tails; it runs shell commands and Docker actions the server sends, only
// when the operator enabled them, each bounded in time, output and number.
//
// The connection is expected to fail. The agent reconnects with capped
// exponential backoff and full jitter, and keeps its samples in a bounded
// buffer until the ingest acknowledges each one by its sequence number, so
// samples taken while offline arrive after the reconnect, in order, with
// their original timestamps; re-sent ones are dropped by the ingest as
// duplicates (they are not newer than what it stored).
package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// Defaults of the settings.
const (
	DefaultURL            = "ws://127.0.0.1:8080/api/v1/agents/ws"
	DefaultInterval       = 5 * time.Second
	DefaultCommandTimeout = 30 * time.Second
	DefaultOutputCap      = 64 << 10
	DefaultBuffer         = 720 // one hour at 5s
	DefaultMaxCommands    = 4
	DefaultPingInterval   = 30 * time.Second
	DefaultHandshake      = 10 * time.Second
	defaultLogQueue       = 256
	defaultReplyQueue     = 64
)

// Config holds the agent's settings. The zero value of a field without a
// flag means its default.
type Config struct {
	URL            string        // ingest agent socket, ws:// or wss://
	APIKey         string        // the server's API key; a secret, never logged
	Interval       time.Duration // time between metrics samples
	LogFiles       []string      // files to tail
	EnableCommands bool          // run commands and Docker actions from the server
	CommandTimeout time.Duration // upper bound on one command or Docker action
	OutputCap      int           // command output bytes kept; more is cut
	DockerSocket   string        // Docker Engine API Unix socket
	Buffer         int           // unacknowledged samples kept while offline
	MaxCommands    int           // commands running at once; more are refused
	PingInterval   time.Duration // application ping period; silence for two is a dead link

	BackoffBase      time.Duration // first reconnect delay bound (default 1s)
	BackoffCap       time.Duration // largest reconnect delay (default 1m)
	HealthyAfter     time.Duration // a connection living this long resets the backoff (default 1m)
	HandshakeTimeout time.Duration // dial plus auth (default 10s)
	TailPoll         time.Duration // log file poll period (default 500ms)
}

// RegisterFlags registers the agent's flags on fs (HERALD_<NAME> in the
// environment, e.g. HERALD_API_KEY).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "url", DefaultURL, "ingest agent WebSocket URL")
	fs.StringVar(&c.APIKey, "api-key", "", "API key of this server (prefer HERALD_API_KEY: flags show in ps)")
	fs.DurationVar(&c.Interval, "interval", DefaultInterval, "time between metrics samples")
	fs.Var((*listFlag)(&c.LogFiles), "log-files", "comma-separated files to tail and stream")
	fs.BoolVar(&c.EnableCommands, "enable-commands", false, "run shell commands and Docker actions sent by the server (off: refused)")
	fs.DurationVar(&c.CommandTimeout, "command-timeout", DefaultCommandTimeout, "longest a command or Docker action may run (a smaller per-command timeout from the server wins)")
	fs.IntVar(&c.OutputCap, "output-cap", DefaultOutputCap, "command output bytes kept; longer output is cut and marked truncated")
	fs.StringVar(&c.DockerSocket, "docker-socket", DefaultDockerSocket, "Docker Engine API Unix socket")
	fs.IntVar(&c.Buffer, "buffer", DefaultBuffer, "metrics samples kept while offline (oldest dropped first)")
	fs.IntVar(&c.MaxCommands, "max-commands", DefaultMaxCommands, "commands running at once; more are refused")
	fs.DurationVar(&c.PingInterval, "ping-interval", DefaultPingInterval, "heartbeat period; no traffic for two periods means the connection is dead")
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("url: %w", err))
	case u.Scheme != "ws" && u.Scheme != "wss":
		errs = append(errs, fmt.Errorf("url: scheme must be ws or wss, not %q", u.Scheme))
	case u.Host == "":
		errs = append(errs, errors.New("url: must have a host"))
	}
	if c.APIKey == "" {
		errs = append(errs, errors.New("api-key: must be set (flag -api-key or HERALD_API_KEY)"))
	}
	positive := map[string]time.Duration{"interval": c.Interval, "command-timeout": c.CommandTimeout}
	for name, d := range positive {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", name))
		}
	}
	if c.OutputCap <= 0 || c.Buffer <= 0 {
		errs = append(errs, errors.New("output-cap, buffer: must be positive"))
	}
	if c.MaxCommands < 0 || c.PingInterval < 0 || c.BackoffBase < 0 || c.BackoffCap < 0 ||
		c.HealthyAfter < 0 || c.HandshakeTimeout < 0 || c.TailPoll < 0 {
		errs = append(errs, errors.New("max-commands, ping-interval and the timing settings: must not be negative"))
	}
	for _, f := range c.LogFiles {
		if strings.TrimSpace(f) == "" {
			errs = append(errs, errors.New("log-files: empty file name"))
		}
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxCommands == 0 {
		c.MaxCommands = DefaultMaxCommands
	}
	if c.DockerSocket == "" {
		c.DockerSocket = DefaultDockerSocket
	}
	def(&c.PingInterval, DefaultPingInterval)
	def(&c.BackoffBase, DefaultBackoffBase)
	def(&c.BackoffCap, DefaultBackoffCap)
	def(&c.HealthyAfter, DefaultHealthyAfter)
	def(&c.HandshakeTimeout, DefaultHandshake)
	def(&c.TailPoll, DefaultTailPoll)
	return c
}

// listFlag is a comma-separated list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = nil
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}

// Deps holds what the agent uses that a test may want to swap.
type Deps struct {
	Log       *slog.Logger
	Collector Collector // nil: a HostCollector
}

// Agent is one running agent. Build it with New, start it with Run.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	collector Collector
	buf       *sampleBuffer[agentwire.Metrics]
	logs      chan agentwire.Log
	exec      *executor
	docker    *dockerClient

	tasks sync.WaitGroup // running commands and Docker actions
}

// New validates cfg and builds an agent. It starts nothing.
func New(cfg Config, deps Deps) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Collector == nil {
		deps.Collector = &HostCollector{}
	}
	return &Agent{
		cfg:       cfg,
		log:       deps.Log.With("component", "agent"),
		collector: deps.Collector,
		buf:       newSampleBuffer[agentwire.Metrics](cfg.Buffer),
		logs:      make(chan agentwire.Log, defaultLogQueue),
		exec:      newExecutor(cfg.EnableCommands, cfg.CommandTimeout, cfg.OutputCap, cfg.MaxCommands),
		docker:    newDockerClient(cfg.DockerSocket, cfg.CommandTimeout),
	}, nil
}

// Run samples, tails and stays connected until ctx is done, then closes the
// connection (1001), stops running commands and returns nil once every
// goroutine it started has exited.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent starting", "url", a.cfg.URL, "interval", a.cfg.Interval,
		"log_files", a.cfg.LogFiles, "commands_enabled", a.cfg.EnableCommands)
	var wg sync.WaitGroup
	wg.Go(func() { a.sample(ctx) })
	for _, path := range a.cfg.LogFiles {
		t := &tailer{path: path, poll: a.cfg.TailPoll, out: a.logs, log: a.log, now: time.Now}
		wg.Go(func() { t.run(ctx) })
	}
	wg.Go(func() { a.stayConnected(ctx) })
	wg.Wait()
	a.tasks.Wait()
	return nil
}

// sample takes a sample now and every interval, into the buffer.
func (a *Agent) sample(ctx context.Context) {
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	dropping := false
	lastErr := ""
	for {
		m, err := a.collector.Metrics(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil && err.Error() != lastErr {
			a.log.Warn("metrics sample incomplete", "err", err)
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
		if _, evicted := a.buf.Push(m); evicted && !dropping {
			dropping = true
			a.log.Warn("offline buffer full: dropping the oldest samples", "capacity", a.cfg.Buffer)
		} else if !evicted && dropping {
			dropping = false
			a.log.Warn("offline buffer has room again", "dropped_total", a.buf.Dropped())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
