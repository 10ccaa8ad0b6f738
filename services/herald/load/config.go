// Package load is Herald's load generator: many WebSocket clients in the DRP dialect spread
// over several source addresses and edges, events published at a fixed rate through ingest's
// gRPC EventService or straight onto NATS, and one Result measured from what the clients
// receive (publish-to-receive latency from the timestamp inside each event, lost and
// duplicated events) and from /proc (server memory and CPU, how busy the machine was).
//
// It only talks to loopback addresses and bounds itself in clients, rate and time: it is a
// tool for measuring a stack on the machine it runs on, not for loading anyone else's.
// cmd/herald-load is its command line; Run is the API for other front ends.
package load

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"
)

// Bounds on a run, whatever the caller asks for.
const (
	MaxClients  = 100_000
	MaxRate     = 2_000_000 // events per second
	MaxDuration = 10 * time.Minute
	MaxSources  = 250 // 127.0.0.2 ... 127.0.0.251
)

// How events are published.
const (
	PublishNATS       = "nats"        // core NATS publish of the canonical payload: the edge alone
	PublishGRPC       = "grpc"        // EventService.Publish, unary, Concurrency callers
	PublishGRPCStream = "grpc-stream" // EventService.PublishStream from one caller
)

// Config is one run.
type Config struct {
	Edges   []string // DRP socket URLs, ws://127.0.0.1:8080/api/v3/ws; clients are spread over them
	Token   string   // Herald token, or user:password to log in with once, for the sockets and gRPC
	Clients int      // WebSocket clients
	Sources int      // source addresses 127.0.0.2... the clients are spread over (0: 1, the default address)

	ConnectRate float64 // new connections per second (0: as fast as they go)

	Rate     float64       // events per second, all clients subscribe to all of them
	Duration time.Duration // how long events are published
	Drain    time.Duration // how long to wait for the last events after publishing stops (0: 5s)

	Publish     string // PublishNATS, PublishGRPC or PublishGRPCStream
	NATSURL     string // for PublishNATS: nats://127.0.0.1:4222
	GRPCAddr    string // for the gRPC modes: 127.0.0.1:9090
	GRPCToken   string // bearer token for gRPC (empty: Token)
	Concurrency int    // unary gRPC callers (0: 4)

	Type   string // the events' DRP type (default "loadtest"); clients register Type.*.*
	Pids   []int  // server processes whose RSS and CPU are read from /proc
	Size   int    // approximate payload bytes of an event's Object (default 100)
	Report time.Duration
}

func (c Config) withDefaults() Config {
	if c.Sources == 0 {
		c.Sources = 1
	}
	if c.Drain == 0 {
		c.Drain = 5 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Type == "" {
		c.Type = "loadtest"
	}
	if c.Size == 0 {
		c.Size = 100
	}
	if c.Report == 0 {
		c.Report = 5 * time.Second
	}
	if c.Publish == "" {
		c.Publish = PublishNATS
	}
	if c.GRPCToken == "" {
		c.GRPCToken = c.Token
	}
	return c
}

// Validate reports every setting that cannot be run, including any target that is not on
// this machine's loopback interface.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Edges) == 0 {
		bad("edges: at least one DRP socket URL is needed")
	}
	for _, e := range c.Edges {
		if err := loopbackURL(e, "ws"); err != nil {
			bad("edge %q: %w", e, err)
		}
	}
	if c.Clients < 1 || c.Clients > MaxClients {
		bad("clients: %d, want 1..%d", c.Clients, MaxClients)
	}
	if c.Sources < 1 || c.Sources > MaxSources {
		bad("sources: %d, want 1..%d", c.Sources, MaxSources)
	}
	if c.Rate <= 0 || c.Rate > MaxRate {
		bad("rate: %g, want (0, %d] events/s", c.Rate, MaxRate)
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		bad("duration: %s, want (0, %s]", c.Duration, MaxDuration)
	}
	if c.Drain < 0 || c.Drain > time.Minute {
		bad("drain: %s, want at most 1m", c.Drain)
	}
	if c.ConnectRate < 0 {
		bad("connect rate: must not be negative")
	}
	if c.Size < 0 || c.Size > 64<<10 {
		bad("size: %d, want at most 64 KiB", c.Size)
	}
	switch c.Publish {
	case PublishNATS:
		if err := loopbackURL(c.NATSURL, "nats"); err != nil {
			bad("nats url %q: %w", c.NATSURL, err)
		}
	case PublishGRPC, PublishGRPCStream:
		if err := loopbackHostPort(c.GRPCAddr); err != nil {
			bad("grpc addr %q: %w", c.GRPCAddr, err)
		}
		if c.Concurrency < 1 || c.Concurrency > 1024 {
			bad("concurrency: %d, want 1..1024", c.Concurrency)
		}
	default:
		bad("publish: %q, want %s, %s or %s", c.Publish, PublishNATS, PublishGRPC, PublishGRPCStream)
	}
	if c.Token == "" {
		bad("token: the sockets need credentials")
	}
	return errors.Join(errs...)
}

var errNotLoopback = errors.New("not a loopback address: herald-load only loads this machine")

func loopbackURL(raw, scheme string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != scheme && !(scheme == "ws" && u.Scheme == "wss") {
		return fmt.Errorf("scheme %q, want %s://", u.Scheme, scheme)
	}
	return loopbackHost(u.Hostname())
}

func loopbackHostPort(hp string) error {
	host, _, err := net.SplitHostPort(hp)
	if err != nil {
		return err
	}
	return loopbackHost(host)
}

// loopbackHost accepts "localhost" and loopback IP literals only: a name is never resolved,
// so no DNS answer can point the tool elsewhere.
func loopbackHost(host string) error {
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return errNotLoopback
	}
	return nil
}
