// Package ingest is Herald's publishing service: it takes events from internal callers
// (gRPC EventService.Publish, or the in-process Publish method) and stores them in the
// HERALD_EVENTS JetStream stream, from which every edge delivers them. Later it also holds
// the agent WebSockets.
package ingest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// StreamName is the JetStream stream that keeps every event published on the
// subject.EventsWildcard subjects.
const StreamName = "HERALD_EVENTS"

// Defaults for the zero values of Config.
const (
	DefaultStreamMaxAge   = 24 * time.Hour
	DefaultStreamMaxBytes = 1 << 30 // 1 GiB
	DefaultPublishTimeout = 5 * time.Second
)

// Config holds the ingest settings. A zero field means its default.
type Config struct {
	// StreamMaxAge is how long HERALD_EVENTS keeps an event, so a reconnecting client can
	// catch up on what it missed. Default 24h.
	StreamMaxAge time.Duration
	// StreamMaxBytes bounds the stream's size on disk; the oldest events go first.
	// Default 1 GiB.
	StreamMaxBytes int64
	// StreamReplicas is the number of copies of the stream in a NATS cluster. Default 1.
	StreamReplicas int
	// PublishTimeout bounds how long one Publish waits for NATS's acknowledgement, on
	// top of any deadline of the caller. Default 5s.
	PublishTimeout time.Duration
}

// RegisterFlags binds c to fs under the "ingest." prefix.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.StreamMaxAge, "ingest.stream-max-age", DefaultStreamMaxAge,
		"how long the "+StreamName+" stream keeps events")
	fs.Int64Var(&c.StreamMaxBytes, "ingest.stream-max-bytes", DefaultStreamMaxBytes,
		"size bound of the "+StreamName+" stream in bytes; the oldest events are dropped first")
	fs.IntVar(&c.StreamReplicas, "ingest.stream-replicas", 1,
		"copies of the "+StreamName+" stream in a NATS cluster")
	fs.DurationVar(&c.PublishTimeout, "ingest.publish-timeout", DefaultPublishTimeout,
		"how long a publish waits for NATS to acknowledge an event")
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
	case c.PublishTimeout < 0:
		return fmt.Errorf("ingest.publish-timeout: must not be negative, got %s", c.PublishTimeout)
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
	if c.StreamReplicas == 0 {
		c.StreamReplicas = 1
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	return c
}

// Deps are the collaborators a Service uses; the process owns them.
type Deps struct {
	// NC is the NATS connection events are published on. Required.
	NC *nats.Conn
	// Log receives the service's logs. Nil discards them.
	Log *slog.Logger
}

// Service publishes events to NATS JetStream. Create it with New and start it with Run;
// Publish waits until Run has made sure the stream exists.
type Service struct {
	cfg   Config
	nc    *nats.Conn
	js    jetstream.JetStream
	log   *slog.Logger
	ready chan struct{} // closed by Run once the stream exists
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
	return &Service{
		cfg:   cfg.withDefaults(),
		nc:    deps.NC,
		js:    js,
		log:   log.With("component", "ingest"),
		ready: make(chan struct{}),
	}, nil
}

// RegisterGRPC registers EventService on s.
func (s *Service) RegisterGRPC(r grpc.ServiceRegistrar) {
	heraldv1.RegisterEventServiceServer(r, &eventServer{svc: s})
}

// Register adds the service's HTTP routes to mux. There are none yet: the agent WebSocket
// arrives in a later issue.
func (s *Service) Register(mux *http.ServeMux) {}

// Ready is closed once Run has ensured the event stream and Publish can succeed.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run ensures the HERALD_EVENTS stream exists with the configured limits, then blocks until
// ctx is done. While NATS cannot be reached it retries (logging each failure); a
// configuration that JetStream rejects ends Run with the error.
func (s *Service) Run(ctx context.Context) error {
	if err := s.ensureStream(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	close(s.ready)
	s.log.Info("event stream ready", "stream", StreamName)
	<-ctx.Done()
	// Nothing to drain: every Publish waits for its own acknowledgement, and the
	// process drains the NATS connection it owns.
	return nil
}
