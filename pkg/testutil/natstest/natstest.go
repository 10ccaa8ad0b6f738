// Package natstest runs real, embedded nats-server instances for tests:
// never a mock. Every server listens on 127.0.0.1 with a port of its own
// choosing and is shut down when the test ends.
package natstest

import (
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/testutil"
)

// readyTimeout bounds how long a server may take to accept clients.
const readyTimeout = 10 * time.Second

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
	s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		tb.Fatalf("natstest: server not ready for connections within %s", readyTimeout)
	}
	return s
}

// RunCluster starts n servers joined by routes on 127.0.0.1 and waits until
// every server has a route to each of the n-1 others. JetStream is off: a
// clustered JetStream needs a meta-leader election that would make every
// test slower, and the tests that use clusters are about core NATS
// interest propagation.
func RunCluster(tb testing.TB, n int) []*server.Server {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest: cluster size %d, want at least 1", n)
	}
	name := fmt.Sprintf("herald-test-%d", time.Now().UnixNano())
	servers := make([]*server.Server, 0, n)
	var seed *url.URL
	for i := range n {
		o := DefaultOptions(tb)
		o.JetStream = false
		o.ServerName = fmt.Sprintf("%s-%d", name, i)
		o.Cluster = server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: -1}
		if seed != nil {
			// Every server routes to the first; gossip completes the mesh.
			o.Routes = []*url.URL{seed}
		}
		s := start(tb, o)
		if seed == nil {
			seed = &url.URL{Scheme: "nats-route", Host: s.ClusterAddr().String()}
		}
		servers = append(servers, s)
	}
	testutil.Eventually(tb, readyTimeout, func() error {
		for _, s := range servers {
			if got := s.NumRemotes(); got != n-1 {
				return fmt.Errorf("server %s has %d remotes, want %d", s.Name(), got, n-1)
			}
		}
		return nil
	})
	return servers
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
