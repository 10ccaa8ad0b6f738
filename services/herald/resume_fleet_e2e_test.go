package herald_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/heraldhq/herald/pkg/drpwatch"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
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

// resumer is a client that does what the README tells Herald's users to do: keep the position
// of the last event, and on any loss of its socket reconnect with jittered backoff to one of
// the edges, resuming from it. got is the key of every event received, in order.
type resumer struct {
	dialect string // drp, rancher or salt
	edges   []*fleetEdge
	home    int // the edge it starts on
	tok     string

	mu        sync.Mutex
	got       []int
	pos       string
	reconnect int
	last      int // the edge of the latest session
	tooOld    bool
}

func (c *resumer) keys() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.got...)
}

func (c *resumer) url(e *fleetEdge) string {
	c.mu.Lock()
	since := url.QueryEscape(c.pos)
	c.mu.Unlock()
	switch c.dialect {
	case "drp":
		return e.url + "/api/v3/ws?token=" + url.QueryEscape(c.tok) + "&since=" + since
	case "rancher":
		return e.url + "/v3/subscribe?resourceTypes=fleet&since=" + since
	default:
		return e.url + "/all_events/" + c.tok + "?since=" + since
	}
}

// run keeps the client connected until ctx ends, trying its home edge first and the others
// after a failure, in turn.
func (c *resumer) run(ctx context.Context) {
	next := c.home
	for attempt := 0; ctx.Err() == nil && attempt < 1000; attempt++ {
		c.session(ctx, next%len(c.edges))
		next++
		c.mu.Lock()
		c.reconnect++
		c.mu.Unlock()
		backoff := time.Duration(20+rand.IntN(80)) * time.Millisecond // full jitter, bounded
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
}

func (c *resumer) session(ctx context.Context, i int) {
	e := c.edges[i]
	c.mu.Lock()
	c.last = i
	c.mu.Unlock()
	hdr := http.Header{}
	if c.dialect == "rancher" {
		hdr.Set("Authorization", "Bearer "+c.tok)
	}
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	ws, _, err := d.DialContext(ctx, c.url(e), hdr)
	if err != nil {
		return
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	switch c.dialect {
	case "drp":
		err = ws.WriteMessage(websocket.TextMessage, []byte("register fleet.*.*"))
	case "salt":
		err = ws.WriteMessage(websocket.TextMessage, []byte("websocket client ready"))
	}
	if err != nil {
		return
	}
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		key, pos, tooOld := parseFleetFrame(c.dialect, msg)
		c.mu.Lock()
		c.tooOld = c.tooOld || tooOld
		if pos != "" {
			c.got = append(c.got, key)
			c.pos = pos
		}
		c.mu.Unlock()
	}
}

// parseFleetFrame reads a fleet event's key and position from a frame of dialect; pos is ""
// for frames that are not fleet events (acks, pings, resume signals).
func parseFleetFrame(dialect string, msg []byte) (key int, pos string, tooOld bool) {
	var err error
	switch dialect {
	case "drp":
		var f struct{ Type, Action, Key, Position string }
		_ = json.Unmarshal(msg, &f)
		if f.Type == "websocket" {
			return 0, "", f.Action == "error" && strings.Contains(string(msg), `"Code":410`)
		}
		if f.Type == "fleet" {
			key, err = strconv.Atoi(f.Key)
			pos = f.Position
		}
	case "rancher":
		var f struct {
			Name     string
			Data     struct{ ID string }
			Position string
		}
		_ = json.Unmarshal(msg, &f)
		if f.Name == "resource.error" {
			return 0, "", strings.Contains(string(msg), "too old")
		}
		if f.Name == "resource.change" {
			key, err = strconv.Atoi(f.Data.ID)
			pos = f.Position
		}
	default:
		var f struct {
			Tag  string
			Data map[string]any
		}
		_ = json.Unmarshal(msg, &f)
		if f.Tag == "herald/resume/error" {
			return 0, "", true
		}
		if k, ok := strings.CutPrefix(f.Tag, "herald/fleet/tick/"); ok {
			key, err = strconv.Atoi(k)
			pos, _ = f.Data["_position"].(string)
		}
	}
	if err != nil {
		return 0, "", false
	}
	return key, pos, false
}

// TestResumeAcrossEdgeCrash: three NATS nodes, two ingests, three edges, real Redis; 300
// clients across the edges in the three dialects that resume (DRP, Rancher, Salt all_events)
// while events are published at a steady rate through both ingests. One edge is killed: its
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

	ctx, cancel := context.WithCancel(context.Background())
	var clients []*resumer
	var wg sync.WaitGroup
	for i := range len(edges) * resumePerEdge {
		c := &resumer{dialect: []string{"drp", "rancher", "salt"}[i%3], edges: edges, home: i / resumePerEdge, tok: tok, pos: start}
		clients = append(clients, c)
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ctx) }()
	}
	// And the watcher Herald ships (`herald watch`), given every edge, edge-1 first.
	var urls []string
	for _, e := range edges {
		urls = append(urls, e.url+"/api/v3/ws")
	}
	var watched struct {
		sync.Mutex
		keys    []int
		signals []string
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = drpwatch.Watch(ctx, drpwatch.Options{URLs: urls, Token: tok, Patterns: []string{"fleet.*.*"}, Since: start},
			func(ev drpwatch.Event) {
				k, _ := strconv.Atoi(ev.Key)
				watched.Lock()
				watched.keys = append(watched.keys, k)
				watched.Unlock()
			}, func(sig drpwatch.Signal) {
				watched.Lock()
				watched.signals = append(watched.signals, sig.Kind)
				watched.Unlock()
			})
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	var pubs []heraldv1.EventServiceClient
	for _, addr := range ingests {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		pubs = append(pubs, heraldv1.NewEventServiceClient(cc))
	}
	var res resumeResult
	pctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+pubTok)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(90 * time.Second)
	for i := range resumeEvents {
		<-tick.C
		switch {
		case i == resumeEvents/3:
			disrupt(f, edges)
		case i == 2*resumeEvents/3 && restore != nil:
			restore(f, edges)
		}
		// An error is never a success: the event is published again, through the other
		// ingest, until one acknowledges it. (A failed call that stored the event anyway would
		// show up as a doubled key: the test would catch it.)
		for try := 0; ; try++ {
			cctx, ccancel := context.WithTimeout(pctx, 3*time.Second)
			_, err := pubs[(i+try)%2].Publish(cctx, &heraldv1.PublishRequest{Event: &heraldv1.Event{
				Type: "fleet", Action: "tick", Key: strconv.Itoa(i)}})
			ccancel()
			if err == nil {
				break
			}
			res.publishErrors++
			if time.Now().After(deadline) {
				t.Fatalf("publish %d: still failing after %d tries: %v", i, try+1, err)
			}
		}
	}

	testutil.Eventually(t, 60*time.Second, func() error {
		watched.Lock()
		n := len(watched.keys)
		watched.Unlock()
		if n < resumeEvents {
			return fmt.Errorf("drpwatch has %d of %d events", n, resumeEvents)
		}
		for _, c := range clients {
			if n := len(c.keys()); n < resumeEvents {
				c.mu.Lock()
				defer c.mu.Unlock()
				return fmt.Errorf("a %s client of edge-%d has %d of %d events (position %s, %d reconnects, last on edge-%d)",
					c.dialect, c.home+1, n, resumeEvents, c.pos, c.reconnect, c.last+1)
			}
		}
		return nil
	})
	watched.Lock()
	for j, k := range watched.keys {
		if k != j || len(watched.keys) != resumeEvents {
			t.Fatalf("drpwatch: event %d is %d of %d (%v): lost, doubled or out of order", j, k, len(watched.keys), watched.keys)
		}
	}
	t.Logf("drpwatch signals: %v", watched.signals)
	watched.Unlock()
	for i, c := range clients {
		got := c.keys()
		for j, k := range got {
			if k != j {
				t.Fatalf("client %d (%s, edge-%d): event %d is %d, want %d: lost, doubled or out of order (%v)",
					i, c.dialect, c.home+1, j, k, j, got)
			}
		}
		if len(got) != resumeEvents {
			t.Fatalf("client %d (%s): %d events, want exactly %d", i, c.dialect, len(got), resumeEvents)
		}
		c.mu.Lock()
		if c.tooOld {
			t.Errorf("client %d (%s) was told its position is too old", i, c.dialect)
		}
		if c.home == 0 && c.reconnect > 0 {
			res.moved++
		}
		c.mu.Unlock()
	}
	t.Logf("%d clients x %d events: 0 lost, 0 doubled, in order; %d of edge-1's clients reconnected; %d publish errors retried",
		len(clients), resumeEvents, res.moved, res.publishErrors)
	return res
}
