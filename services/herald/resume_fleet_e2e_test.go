package herald_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldhq/herald/pkg/drpwatch"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
	"github.com/heraldhq/herald/pkg/testutil/resumeclient"
	"github.com/heraldhq/herald/pkg/token"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/edge"
	"github.com/heraldhq/herald/services/ingest"
)

// crashListener remembers every connection it accepted, so a test can drop them all at once
// with no close frame and no FIN handshake of the application: what clients of a process
// killed with -9 see.
type crashListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *crashListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *crashListener) crash() {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as the kernel does for a killed process's sockets
		}
		_ = c.Close()
	}
}

type resumeFleet struct {
	t       *testing.T
	cluster *natstest.Cluster
	redis   *redistest.Server
	issuer  *token.Issuer
}

// connect dials the cluster starting at node i, reconnecting forever as the services do.
func (f *resumeFleet) connect(i int, name string) *nats.Conn {
	nc, err := nats.Connect(f.cluster.ClientURLs(i), nats.Name(name), nats.MaxReconnects(-1), nats.DontRandomize(),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectJitter(50*time.Millisecond, 0))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(nc.Close)
	return nc
}

func (f *resumeFleet) registry() registry.Registry {
	rdb := redis.NewClient(&redis.Options{Addr: f.redis.Addr()})
	f.t.Cleanup(func() { rdb.Close() })
	return registry.NewRedis(rdb, "resume:")
}

type fleetEdge struct {
	url   string
	lis   *crashListener
	nc    *nats.Conn
	stop  func()
	crash func()
}

func (f *resumeFleet) startEdge(i int, id string) *fleetEdge {
	t := f.t
	nc := f.connect(i, id)
	e, err := edge.New(edge.Config{}, edge.Deps{NC: nc, Verifier: token.NewVerifier(f.issuer.PublicKey()),
		Registry: f.registry(), Instance: id})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.Register(mux)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &crashListener{Listener: raw}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	<-e.Ready()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; _ = srv.Close() }) }
	t.Cleanup(stop)
	fe := &fleetEdge{url: "ws://" + raw.Addr().String(), lis: lis, nc: nc, stop: stop}
	fe.crash = func() {
		// The process is gone: its sockets reset, its NATS interest vanishes with its
		// connection. Only then is the rest of it stopped, so nothing says goodbye.
		lis.crash()
		nc.Close()
		stop()
	}
	return fe
}

func (f *resumeFleet) startIngest(i int, id string) string {
	s, err := ingest.New(ingest.Config{StreamReplicas: 3}, ingest.Deps{NC: f.connect(i, id),
		Verifier: token.NewVerifier(f.issuer.PublicKey()), APIKeys: apiKeys{}, Registry: f.registry(), Instance: id})
	if err != nil {
		f.t.Fatal(err)
	}
	return serveIngest(f.t, s, id)
}

// serveIngest runs svc with its gRPC services on a loopback port until the test ends, waits
// until it is ready and returns the gRPC address.
func serveIngest(t *testing.T, svc *ingest.Service, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	svc.RegisterGRPC(gs)
	go func() { _ = gs.Serve(lis) }()
	(&fleet{t: t}).run(svc.Run, gs.Stop)
	select {
	case <-svc.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready", name)
	}
	return lis.Addr().String()
}

// TestResumeAcrossEdgeCrash: three NATS nodes, two ingests, three edges, real Redis; 300
// clients across the edges in the four dialects that resume (DRP, Rancher, Salt all_events,
// and a quarter of them metrics viewers) while events are published at a steady rate through
// both ingests and samples of three servers stored in the telemetry stream. One edge is killed: its
// clients reconnect to the others with their last position, and every client ends with exactly
// the events published, in order, none twice.
func TestResumeAcrossEdgeCrash(t *testing.T) {
	r := runResumeFleet(t, func(f *resumeFleet, edges []*fleetEdge) { edges[0].crash() }, nil)
	if r.moved != resumePerEdge {
		t.Fatalf("%d of edge-1's %d clients reconnected elsewhere, want all", r.moved, resumePerEdge)
	}
}

// TestResumeAcrossNATSNodeLoss: the NATS node that edge-1 and ingest-1 use is shut down in the
// middle and brought back later. Publishing carries on through the other nodes (a caller sees
// errors only while the stream has no quorum, never a false success: every acknowledged event
// reaches every client), and the clients that lost their edge's NATS connection resume with
// nothing lost.
func TestResumeAcrossNATSNodeLoss(t *testing.T) {
	r := runResumeFleet(t,
		func(f *resumeFleet, _ []*fleetEdge) { f.cluster.Shutdown(0) },
		func(f *resumeFleet, _ []*fleetEdge) { f.cluster.Restart(0) })
	t.Logf("publish errors while the node was down: %d (retried)", r.publishErrors)
}

const resumePerEdge, resumeEvents = 100, 150

type resumeResult struct {
	moved         int // edge-1's clients that reconnected
	publishErrors int // publishes that failed and were retried
}

// runResumeFleet runs the fleet, calls disrupt a third of the way through publishing and
// restore (if any) at two thirds, and checks that every client got every event once, in order.
func runResumeFleet(t *testing.T, disrupt, restore func(*resumeFleet, []*fleetEdge)) resumeResult {
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &resumeFleet{t: t, cluster: natstest.RunCluster(t, 3), redis: redistest.Start(t), issuer: token.NewIssuer(priv, time.Hour)}
	ingests := []string{f.startIngest(0, "ingest-1"), f.startIngest(1, "ingest-2")}
	edges := []*fleetEdge{f.startEdge(0, "edge-1"), f.startEdge(1, "edge-2"), f.startEdge(2, "edge-3")}
	tok, _, err := f.issuer.Issue("watcher", []string{"fleet.*.*"})
	if err != nil {
		t.Fatal(err)
	}
	viewTok, _, err := f.issuer.Issue("viewer", []string{"metrics.read.*"})
	if err != nil {
		t.Fatal(err)
	}
	pubTok, _, err := f.issuer.Issue("publisher", []string{"*.*.*"})
	if err != nil {
		t.Fatal(err)
	}
	// Every client starts from the stream's present position, so what it must end with is
	// known: every event published from here on.
	js, err := jetstream.New(edges[1].nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), subject.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	start := eventstream.FormatPosition(eventstream.EpochOf(info), info.State.LastSeq)
	// Samples go in through a node that stays up, as an agent's ingest would publish them.
	tele, err := resumeclient.NewTelemetry(t.Context(), f.connect(2, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var urls []string
	for _, e := range edges {
		urls = append(urls, e.url)
	}
	// Every fourth client is a metrics viewer, of each server in turn; they start from the
	// telemetry stream's present position.
	var kinds []resumeclient.Kind
	for _, srv := range fleetServers {
		kinds = append(append(kinds, resumeclient.Kinds("fleet")...), resumeclient.Viewer{Server: srv})
	}
	clients := resumeclient.Spread(kinds, urls, resumePerEdge, tok, start)
	var evClients, viewers []*resumeclient.Client
	for _, c := range clients {
		if _, ok := c.Kind.(resumeclient.Viewer); ok {
			c.Token, c.Since = viewTok, tele.Start()
			viewers = append(viewers, c)
		} else {
			evClients = append(evClients, c)
		}
	}
	waitClients := resumeclient.RunAll(ctx, clients)
	// And the watcher Herald ships (`herald watch`), given every edge, edge-1 first.
	var watched struct {
		sync.Mutex
		keys    []string
		signals []string
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var wsURLs []string
		for _, u := range urls {
			wsURLs = append(wsURLs, u+"/api/v3/ws")
		}
		_ = drpwatch.Watch(ctx, drpwatch.Options{URLs: wsURLs, Token: tok, Patterns: []string{"fleet.*.*"}, Since: start},
			func(ev drpwatch.Event) {
				watched.Lock()
				watched.keys = append(watched.keys, ev.Key)
				watched.Unlock()
			}, func(sig drpwatch.Signal) {
				watched.Lock()
				watched.signals = append(watched.signals, sig.Kind)
				watched.Unlock()
			})
	}()
	t.Cleanup(func() { cancel(); waitClients(); wg.Wait() })

	pub := &resumeclient.Publisher{Token: pubTok, Type: "fleet"}
	for _, addr := range ingests {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		pub.Ingests = append(pub.Ingests, heraldv1.NewEventServiceClient(cc))
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range resumeEvents {
		<-tick.C
		switch {
		case i == resumeEvents/3:
			disrupt(f, edges)
		case i == 2*resumeEvents/3 && restore != nil:
			restore(f, edges)
		}
		if err := pub.Publish(t.Context(), i); err != nil {
			t.Fatal(err)
		}
		tele.Sample(i, fleetServers)
	}
	acked := pub.Acked()
	sctx, scancel := context.WithTimeout(t.Context(), 30*time.Second)
	stored, err := tele.Stored(sctx)
	scancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := tele.Enough(stored, fleetServers, resumeEvents); err != nil {
		t.Fatal(err)
	}
	want := resumeclient.Expected{Events: acked, Samples: stored}
	var res resumeResult
	res.publishErrors = len(pub.Errors())

	testutil.Eventually(t, 60*time.Second, func() error {
		watched.Lock()
		n := len(watched.keys)
		watched.Unlock()
		if n < resumeEvents {
			return fmt.Errorf("drpwatch has %d of %d events", n, resumeEvents)
		}
		return want.Complete(clients)
	})
	watched.Lock()
	for j, k := range watched.keys {
		if len(watched.keys) != len(acked) || k != acked[j].Key {
			t.Fatalf("drpwatch: event %d is %s of %d (%v): lost, doubled or out of order", j, k, len(watched.keys), watched.keys)
		}
	}
	t.Logf("drpwatch signals: %v", watched.signals)
	watched.Unlock()
	// An event client gets exactly the acknowledged events, a viewer exactly the samples the
	// stream stored for its server, in order.
	if err := want.Check(clients); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if c.Home == 0 && len(c.Sessions()) > 1 {
			res.moved++
		}
	}
	replayed := 0
	for _, v := range viewers {
		replayed += v.Replayed()
	}
	t.Logf("%d clients x %d events and %d viewers x %d samples (%d replayed to viewers that resumed): 0 lost, 0 doubled, in order; %d of edge-1's clients reconnected; %d publish errors retried; %d samples not stored",
		len(evClients), resumeEvents, len(viewers), len(stored[fleetServers[0]]), replayed, res.moved, res.publishErrors, tele.Lost())
	return res
}

// fleetServers are the servers whose samples the fleet's viewers watch.
var fleetServers = []string{"srv-1", "srv-2", "srv-3"}
