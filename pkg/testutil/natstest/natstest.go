// Package natstest runs real, embedded nats-server instances for tests:
// never a mock. Every server listens on 127.0.0.1 with a port of its own
// choosing and is shut down when the test ends.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/testutil"
)

// readyTimeout bounds how long a server may take to accept clients, and
// clusterTimeout how long a cluster may take to form and elect its
// JetStream meta leader (a few seconds on a loaded machine).
const (
	readyTimeout   = 10 * time.Second
	clusterTimeout = 30 * time.Second
)

// DefaultOptions returns the options RunServer starts from: loopback only,
// a free port, no logging, no signal handlers (the test process owns
// signals) and JetStream stored in a per-test temporary directory.
func DefaultOptions(tb testing.TB) *server.Options {
	tb.Helper()
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		NoLog:     true,
		NoSigs:    true,
		JetStream: true,
		StoreDir:  tb.TempDir(),
	}
}

// RunServer starts an embedded nats-server from DefaultOptions changed by
// opts, waits until it accepts clients (failing tb otherwise) and shuts it
// down on cleanup.
func RunServer(tb testing.TB, opts ...func(*server.Options)) *server.Server {
	tb.Helper()
	o := DefaultOptions(tb)
	for _, opt := range opts {
		opt(o)
	}
	return start(tb, o)
}

func start(tb testing.TB, o *server.Options) *server.Server {
	tb.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !o.NoLog {
		s.ConfigureLogger()
	}
	s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		tb.Fatalf("natstest: server not ready for connections within %s", readyTimeout)
	}
	return s
}

// Cluster is n embedded nats-servers joined by routes on 127.0.0.1, with
// clustered JetStream. A node can be stopped and started again on the
// same ports with the same store, the way a killed process comes back.
type Cluster struct {
	tb      testing.TB
	mu      sync.Mutex
	opts    []*server.Options // per node, with the ports it first bound
	servers []*server.Server  // nil while a node is down
}

// RunCluster starts n servers with JetStream clustered over routes on
// 127.0.0.1, and returns once every server routes to the n-1 others and a
// JetStream meta leader is elected that every server follows. Each node
// has its own store directory and syncs every write to disk before
// acknowledging it (sync_interval: always), the durability Herald deploys
// with; opts change every node's options before it starts (for example to
// measure without the sync). Servers shut down on cleanup.
func RunCluster(tb testing.TB, n int, opts ...func(*server.Options)) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest: cluster size %d, want at least 1", n)
	}
	c := &Cluster{tb: tb}
	name := fmt.Sprintf("herald-test-%d", time.Now().UnixNano())
	// Clustered JetStream refuses to start without configured routes, so
	// every node needs every route before the first starts: the ports are
	// chosen up front.
	ports := freePorts(tb, 2*n)
	routes := make([]*url.URL, n)
	for i := range n {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[n+i])}
	}
	for i := range n {
		o := DefaultOptions(tb)
		o.ServerName = fmt.Sprintf("%s-%d", name, i)
		o.Port = ports[i]
		o.SyncAlways = true
		o.Cluster = server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: ports[n+i]}
		// The route to itself is recognised and skipped by the server.
		o.Routes = routes
		for _, opt := range opts {
			opt(o)
		}
		c.opts = append(c.opts, o)
		c.servers = append(c.servers, start(tb, o))
	}
	c.waitFormed()
	return c
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago: all are held open together, so none repeats, then released.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("natstest: reserve a port: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Server returns node i, or nil while it is down.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Servers returns the nodes that are up.
func (c *Cluster) Servers() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var up []*server.Server
	for _, s := range c.servers {
		if s != nil {
			up = append(up, s)
		}
	}
	return up
}

// ClientURL returns node i's client URL, valid also while it is down.
func (c *Cluster) ClientURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

// ClientURLs returns every node's client URL, comma-separated, starting
// with node first: the list a service is configured with, in the order
// it tries them when it does not randomize.
func (c *Cluster) ClientURLs(first int) string {
	urls := []string{c.ClientURL(first)}
	for i := range c.opts {
		if i != first {
			urls = append(urls, c.ClientURL(i))
		}
	}
	return strings.Join(urls, ",")
}

// Shutdown stops node i and waits until it has released its ports and
// store. Its clients see the connection drop, as when the process dies.
func (c *Cluster) Shutdown(i int) {
	c.tb.Helper()
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s == nil {
		c.tb.Fatalf("natstest: node %d is already down", i)
	}
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart starts node i again on its ports with its store, and waits
// until it routes to every node that is up and follows the meta leader.
func (c *Cluster) Restart(i int) *server.Server {
	c.tb.Helper()
	c.mu.Lock()
	if c.servers[i] != nil {
		c.mu.Unlock()
		c.tb.Fatalf("natstest: node %d is already up", i)
	}
	o := c.opts[i].Clone()
	c.mu.Unlock()
	s := start(c.tb, o)
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	c.waitFormed()
	return s
}

// waitFormed waits until every node that is up routes to all the others
// that are up, one of them is the JetStream meta leader, and every one
// is current with it.
func (c *Cluster) waitFormed() {
	c.tb.Helper()
	testutil.Eventually(c.tb, clusterTimeout, func() error {
		up := c.Servers()
		leaders := 0
		for _, s := range up {
			if got := s.NumRemotes(); got != len(up)-1 {
				return fmt.Errorf("server %s has %d remotes, want %d", s.Name(), got, len(up)-1)
			}
			if s.JetStreamIsLeader() {
				leaders++
			}
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("server %s is not current with the JetStream meta leader", s.Name())
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d JetStream meta leaders, want 1", leaders)
		}
		return nil
	})
}

// Connect returns a client connected to s that is drained (and so closed)
// on cleanup, before the server shuts down.
func Connect(tb testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	opts = append([]nats.Option{nats.Name(tb.Name()), nats.MaxReconnects(0)}, opts...)
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		tb.Fatalf("natstest: connect to %s: %v", s.ClientURL(), err)
	}
	tb.Cleanup(func() {
		if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			nc.Close()
			return
		}
		// Drain is asynchronous; wait for it, bounded, then close regardless.
		_ = testutil.Poll(5*time.Second, func() error {
			if nc.IsClosed() {
				return nil
			}
			return errors.New("still draining")
		})
		nc.Close()
	})
	return nc
}

// EventStream creates Herald's event stream (eventstream.StreamConfig, one replica, kept an
// hour) through nc, as ingest does at start: events published on event subjects are then
// stored and republished with their sequence, which is where edges read them. It returns the
// stream's epoch, for a hub's positions.
func EventStream(tb testing.TB, nc *nats.Conn) (epoch string) {
	tb.Helper()
	return createStream(tb, nc, eventstream.StreamConfig(time.Hour, 0, 1))
}

// TelemetryStream creates Herald's telemetry stream (eventstream.TelemetryConfig, one
// replica, kept an hour) through nc, as ingest does at start: samples, alerts and log entries
// published on their subjects are then stored and republished with their sequence, which is
// where edges read them. It returns the stream's epoch.
func TelemetryStream(tb testing.TB, nc *nats.Conn) (epoch string) {
	tb.Helper()
	return createStream(tb, nc, eventstream.TelemetryConfig(time.Hour, 0, 1))
}

func createStream(tb testing.TB, nc *nats.Conn, cfg jetstream.StreamConfig) string {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("natstest: jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		tb.Fatalf("natstest: create the stream %s: %v", cfg.Name, err)
	}
	return eventstream.EpochOf(st.CachedInfo())
}
