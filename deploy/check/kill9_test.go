package check

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/resumeclient"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// natsServerPkg is the nats-server main package, from the version the workspace requires.
const natsServerPkg = "github.com/nats-io/nats-server/v2"

// The kill -9 fleet: three NATS nodes, two ingests and three edges, every one an OS process.
var kill9Services = []string{"auth", "ingest-1", "ingest-2", "edge-1", "edge-2", "edge-3"}

const (
	kill9PerEdge  = 100                   // clients per edge, the kinds in turn
	kill9Every    = 10 * time.Millisecond // one event each, alternately through both ingests
	kill9InFlight = 32                    // publishes waiting for their acknowledgement, at most
)

// TestFleetKill9 kills processes with SIGKILL under load. Three NATS nodes run as nats-server
// processes from deploy/nats/cluster.conf (sync_interval always, HERALD_EVENTS R3 as compose
// sets it), two ingests and three edges as herald processes, real Redis; 300 resuming clients,
// in the four dialects (DRP, Rancher, Salt and metrics viewers), spread over the edges; the
// event clients subscribed to one event type published at a steady rate through both ingests
// (every acknowledged publish recorded), the viewers watching servers whose samples go into
// the telemetry stream at the same rate.
//
//  1. kill -9 edge-1: each of its clients reconnects to another edge with its last position;
//     every client ends with exactly the acknowledged events, every viewer with the stored
//     samples (0 lost, 0 twice, in order).
//  2. kill -9 the NATS node every ingest and edge is connected to, and start it again:
//     publishing carries on (a failed call is retried with the same event id, so a false
//     failure cannot double an event and a false success would show as a lost one), and the
//     clients again end with exactly the acknowledged events.
func TestFleetKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole fleet as processes")
	}
	p := loadCompose(t)
	// Compose runs two edges; a third is one more copy of them.
	p.Services["edge-3"] = p.Services["edge-2"]
	f := &fleet{t: t, p: p, dir: t.TempDir(), addr: map[string]string{}, procs: map[string]*proc{}}
	f.build(natsServerPkg)
	nodes := f.startNATSProcs()
	f.prepare(kill9Services)
	// The ingests and edges are given nats-0 alone: they learn the other nodes from it (the
	// cluster advertises them) and fail over to them when it dies.
	viaNode0 := map[string]string{"HERALD_NATS_URL": "nats://" + f.addr["nats-0:4222"]}
	for _, name := range kill9Services {
		o := viaNode0
		if name == "auth" {
			o = nil
		}
		f.start(name, o)
		f.waitHealthy(name)
	}
	nodes[0].mustHold(t, "herald-ingest", 2)
	nodes[0].mustHold(t, "herald-edge", 3)
	tok := login(t, "http://"+f.addr["auth:8080"])

	pub := &resumeclient.Publisher{Token: tok, Type: "fleet"}
	for _, name := range []string{"ingest-1", "ingest-2"} {
		cc, err := grpc.NewClient(f.addr[name+":9090"], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		pub.Ingests = append(pub.Ingests, heraldv1.NewEventServiceClient(cc))
	}
	var edges []string
	for _, name := range []string{"edge-1", "edge-2", "edge-3"} {
		edges = append(edges, "ws://"+f.addr[name+":8080"])
	}
	start := streamPosition(t, edges[1], tok, pub)
	// Samples go into the telemetry stream through a node that is never killed, as an agent's
	// ingest stores them; every fourth client is a metrics viewer of one of the servers.
	tele, err := resumeclient.NewTelemetry(t.Context(), connectNATS(t, nodes[1].client))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []resumeclient.Kind
	for _, srv := range kill9Servers {
		kinds = append(append(kinds, resumeclient.Kinds("fleet")...), resumeclient.Viewer{Server: srv})
	}
	clients := resumeclient.Spread(kinds, edges, kill9PerEdge, tok, start)
	for _, c := range clients {
		if _, ok := c.Kind.(resumeclient.Viewer); ok {
			c.Since = tele.Start()
		}
	}
	load := &kill9Load{pub: pub, tele: tele}
	ctx, cancel := context.WithCancel(context.Background())
	wait := resumeclient.RunAll(ctx, clients)
	t.Cleanup(func() { cancel(); wait() })
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, c := range clients {
			if len(c.Sessions()) == 0 {
				return fmt.Errorf("%s not connected yet", c)
			}
		}
		return nil
	})

	// 1. An edge killed.
	t.Logf("before: %s", resumeclient.Summary(resumeclient.Reconnects(clients, time.Time{})))
	sent := 0
	var killedEdge time.Time
	sent = load.steadily(t, sent, 300, map[int]func(){100: func() {
		t.Logf("at the kill: %s", resumeclient.Summary(resumeclient.Reconnects(clients, time.Time{})))
		killedEdge = time.Now()
		f.kill9("edge-1")
	}})
	acked := f.settle(clients, load, sent)
	var moved []*resumeclient.Client
	for _, c := range clients {
		if c.Home == 0 {
			if len(c.Sessions()) < 2 {
				t.Errorf("%s did not reconnect after edge-1 was killed", c)
			}
			moved = append(moved, c)
		}
	}
	t.Logf("kill -9 edge-1: %d events acknowledged, %d clients x them: 0 lost, 0 twice, in order; "+
		"edge-1's clients: %s; %d events replayed to resumed sessions",
		len(acked), len(clients), resumeclient.Summary(resumeclient.Reconnects(moved, killedEdge)), replayed(clients))
	replayedBefore := replayed(clients)

	// 2. The NATS node that every ingest and edge uses, killed and started again.
	leader := nodes.streamLeader(t)
	var killedNode, restarted time.Time
	before := len(pub.Errors())
	sent = load.steadily(t, sent, 1500, map[int]func(){
		400: func() {
			killedNode = time.Now()
			f.kill9("nats-0")
		},
		900: func() {
			restarted = time.Now()
			nodes[0].start(f)
		},
	})
	var downFirst, downLast uint64
	for _, a := range pub.Acked() {
		if a.At.After(killedNode) && a.At.Before(restarted) {
			if downFirst == 0 {
				downFirst = a.Seq
			}
			downLast = a.Seq
		}
	}
	t.Logf("acknowledged while nats-0 was down: seq %d-%d", downFirst, downLast)
	go func() {
		nodes[0].waitHealthy(t)
		t.Logf("nats-0 healthy again %s after its restart", time.Since(restarted).Round(time.Millisecond))
	}()
	acked = f.settle(clients, load, sent)
	errs := pub.Errors()[before:]
	window := "none"
	if len(errs) > 0 {
		kinds := map[string]int{}
		for _, e := range errs {
			kinds[e.Err]++
		}
		window = fmt.Sprintf("%s to %s after the kill %v", errs[0].At.Sub(killedNode).Round(time.Millisecond),
			errs[len(errs)-1].At.Sub(killedNode).Round(time.Millisecond), kinds)
		if last := errs[len(errs)-1].At; last.After(restarted.Add(10 * time.Second)) {
			t.Errorf("publish errors went on until %s after nats-0 came back", last.Sub(restarted))
		}
	}
	var ackedDown int
	for _, a := range acked {
		if a.At.After(killedNode) && a.At.Before(restarted) {
			ackedDown++
		}
	}
	if ackedDown == 0 {
		t.Errorf("no publish was acknowledged while nats-0 was down (%s): two of three nodes are a quorum", restarted.Sub(killedNode))
	}
	t.Logf("kill -9 nats-0 (stream leader was %s) for %s: %d events acknowledged in all (%d while it was down), "+
		"%d publish errors, retried, from %s; %d clients x them: 0 lost, 0 twice, in order; %s; "+
		"%d events replayed to resumed sessions",
		leader, restarted.Sub(killedNode).Round(time.Millisecond), len(acked), ackedDown, len(errs), window, len(clients),
		resumeclient.Summary(resumeclient.Reconnects(clients, killedNode)), replayed(clients)-replayedBefore)
}

// kill9Servers are the servers whose samples the viewers watch.
var kill9Servers = []string{"srv-a", "srv-b", "srv-c"}

// kill9Load is what the fleet is given: events through the ingests, samples into the
// telemetry stream.
type kill9Load struct {
	pub  *resumeclient.Publisher
	tele *resumeclient.Telemetry
}

// steadily publishes events from..to-1 and a sample of every server with each, one every
// kill9Every whatever the calls take (at most kill9InFlight wait at once), calling at[i]
// before event i; it returns to.
func (l *kill9Load) steadily(t *testing.T, from, to int, at map[int]func()) int {
	pub := l.pub
	t.Helper()
	tick := time.NewTicker(kill9Every)
	defer tick.Stop()
	slots := make(chan struct{}, kill9InFlight)
	errs := make(chan error, to-from)
	began := time.Now()
	for i := from; i < to; i++ {
		<-tick.C
		if f := at[i]; f != nil {
			f()
		}
		l.tele.Sample(i, kill9Servers)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots }()
			errs <- pub.Publish(t.Context(), i)
		}()
	}
	sent := time.Since(began)
	for range to - from {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("events %d-%d sent in %s (%.0f/s), all acknowledged %s after the first", from, to-1,
		sent.Round(time.Millisecond), float64(to-from)/sent.Seconds(), time.Since(began).Round(time.Millisecond))
	return to
}

// settle waits until every client has the n acknowledged events, or each viewer every sample
// the telemetry stream stored of its server, then checks them exactly.
func (f *fleet) settle(clients []*resumeclient.Client, l *kill9Load, n int) []resumeclient.Acked {
	acked := l.pub.Acked()
	if len(acked) != n {
		f.t.Fatalf("%d events acknowledged, %d published", len(acked), n)
	}
	ctx, cancel := context.WithTimeout(f.t.Context(), 30*time.Second)
	stored, err := l.tele.Stored(ctx)
	cancel()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := l.tele.Enough(stored, kill9Servers, n); err != nil {
		f.t.Fatal(err)
	}
	want := resumeclient.Expected{Events: acked, Samples: stored}
	if err := testutil.Poll(30*time.Second, func() error { return want.Complete(clients) }); err != nil {
		f.dumpEdges()
		f.t.Fatalf("not delivered within 30s: %v\n%v", err, want.Check(clients))
	}
	if err := want.Check(clients); err != nil {
		f.t.Fatal(err)
	}
	f.t.Logf("viewers: %d samples of each server stored, %d not acknowledged", len(stored[kill9Servers[0]]), l.tele.Lost())
	return acked
}

// streamPosition is the stream's position after one event published now, read as a DRP
// client of the edge at base sees it: where the clients start.
func streamPosition(t *testing.T, base, tok string, pub *resumeclient.Publisher) string {
	t.Helper()
	ws := dialDRP(t, base, tok)
	defer ws.Close()
	register(t, ws, "start.*.*")
	mark := &resumeclient.Publisher{Ingests: pub.Ingests, Token: tok, Type: "start"}
	if err := mark.Publish(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ev struct{ Type, Position string }
	if err := ws.ReadJSON(&ev); err != nil || ev.Type != "start" || ev.Position == "" {
		t.Fatalf("start event %+v: %v", ev, err)
	}
	return ev.Position
}

// dumpEdges makes every live edge print its goroutines and exit (SIGQUIT), so the output a
// failed test keeps shows where deliveries stopped.
func (f *fleet) dumpEdges() {
	for name, p := range f.procs {
		if !strings.HasPrefix(name, "edge-") {
			continue
		}
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// kill9 sends SIGKILL to a fleet process and waits until it is gone.
func (f *fleet) kill9(name string) {
	p := f.procs[name]
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		f.t.Fatalf("kill -9 %s: %v", name, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		f.t.Fatalf("%s still running 10s after SIGKILL", name)
	}
}

// natsNode is one nats-server process of the fleet: its config file and ports stay the same
// across restarts, and so does its store.
type natsNode struct {
	name, conf string
	client     string // 127.0.0.1:port
	monitor    string // 127.0.0.1:port of the HTTP monitoring endpoint
}

type natsNodes []*natsNode

// startNATSProcs writes deploy/nats/cluster.conf once per node with the container addresses
// and the store directory mapped to this machine, and runs the three nodes.
func (f *fleet) startNATSProcs() natsNodes {
	t := f.t
	b, err := os.ReadFile(filepath.Join(root, "deploy/nats/cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	routes := make([]string, n)
	for i := range routes {
		routes[i] = freeAddr(t)
	}
	var nodes natsNodes
	for i := range n {
		nd := &natsNode{name: fmt.Sprintf("nats-%d", i), client: freeAddr(t), monitor: freeAddr(t)}
		pairs := []string{"0.0.0.0:4222", nd.client, "0.0.0.0:8222", nd.monitor, "0.0.0.0:6222", routes[i],
			"/data/jetstream", filepath.Join(f.dir, nd.name, "jetstream")}
		for k := range n {
			pairs = append(pairs, fmt.Sprintf("nats-%d.nats:6222", k), routes[k])
		}
		conf := strings.NewReplacer(pairs...).Replace(string(b))
		for _, left := range []string{"0.0.0.0", ".nats:", "/data/"} {
			if strings.Contains(conf, left) {
				t.Fatalf("deploy/nats/cluster.conf: %q left after mapping the addresses; the test needs to learn its new shape", left)
			}
		}
		nd.conf = filepath.Join(f.dir, nd.name+".conf")
		if err := os.WriteFile(nd.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		// What the processes run on is what deploy/ promises.
		t.Setenv("NATS_SERVER_NAME", nd.name)
		o, err := server.ProcessConfigFile(nd.conf)
		if err != nil {
			t.Fatalf("%s: %v", nd.conf, err)
		}
		if !o.JetStream || !o.SyncAlways || len(o.Routes) != n || o.ServerName != nd.name {
			t.Fatalf("%s: jetstream %v, sync always %v, %d routes, name %q", nd.conf, o.JetStream, o.SyncAlways, len(o.Routes), o.ServerName)
		}
		f.addr[nd.name+":4222"] = nd.client
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		nd.start(f)
	}
	for _, nd := range nodes {
		nd.waitHealthy(t)
	}
	return nodes
}

func (nd *natsNode) start(f *fleet) {
	bin := filepath.Join(f.dir, "nats-server")
	cmd := exec.Command(bin, "-c", nd.conf)
	cmd.Env = append(os.Environ(), "NATS_SERVER_NAME="+nd.name)
	f.spawn(nd.name, cmd)
}

// waitHealthy polls the node's /healthz (compose's probe asks only whether JetStream is
// enabled; this asks whether its streams are current too).
func (nd *natsNode) waitHealthy(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		if code, body := get(nd.monitor, "/healthz"); code != http.StatusOK {
			return fmt.Errorf("%s /healthz: %d %s", nd.name, code, body)
		}
		// Healthy may come before the node knows a meta leader and its peers are seen online,
		// and without them nothing can place a stream or a bucket on three nodes.
		code, body := get(nd.monitor, "/jsz")
		var jsz struct {
			Meta struct {
				Leader   string
				Size     int `json:"cluster_size"`
				Replicas []struct {
					Name    string
					Offline bool
				}
			} `json:"meta_cluster"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &jsz) != nil || jsz.Meta.Leader == "" || jsz.Meta.Size != 3 {
			return fmt.Errorf("%s: no JetStream meta leader of 3 nodes yet: /jsz %d %.300s", nd.name, code, body)
		}
		for _, r := range jsz.Meta.Replicas {
			if r.Offline {
				return fmt.Errorf("%s: meta peer %s offline", nd.name, r.Name)
			}
		}
		return nil
	})
}

// mustHold fails unless the node has at least n client connections named name.
func (nd *natsNode) mustHold(t *testing.T, name string, n int) {
	t.Helper()
	code, body := get(nd.monitor, "/connz?limit=1024")
	var connz struct{ Connections []struct{ Name string } }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &connz) != nil {
		t.Fatalf("%s /connz: %d %s", nd.name, code, body)
	}
	got := 0
	for _, c := range connz.Connections {
		if c.Name == name {
			got++
		}
	}
	if got < n {
		t.Fatalf("%s holds %d connections of %s, want %d", nd.name, got, name, n)
	}
}

// streamLeader is the node that leads the event stream, as the nodes report it.
func (nodes natsNodes) streamLeader(t *testing.T) string {
	t.Helper()
	for _, nd := range nodes {
		code, body := get(nd.monitor, "/jsz?accounts=true&streams=true")
		if code != http.StatusOK {
			continue
		}
		var jsz struct {
			AccountDetails []struct {
				StreamDetail []struct {
					Name    string
					Cluster struct{ Leader string }
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		if json.Unmarshal([]byte(body), &jsz) != nil {
			continue
		}
		for _, a := range jsz.AccountDetails {
			for _, s := range a.StreamDetail {
				if s.Name == subject.EventStream && s.Cluster.Leader != "" {
					return s.Cluster.Leader
				}
			}
		}
	}
	return "unknown"
}

func replayed(clients []*resumeclient.Client) int {
	n := 0
	for _, c := range clients {
		n += c.Replayed()
	}
	return n
}

// connectNATS is the test's own NATS connection to one node (for the telemetry it stores).
func connectNATS(t *testing.T, addr string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("nats://"+addr, nats.Name("kill9-test"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
