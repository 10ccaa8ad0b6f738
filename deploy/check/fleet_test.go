package check

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// fleet is docker-compose.yml run as processes: the same services with the same HERALD_*
// environment, each container address (service:port) mapped to a 127.0.0.1 port.
type fleet struct {
	t     *testing.T
	p     *types.Project
	dir   string
	addr  map[string]string // "service:port" as written in the files -> 127.0.0.1:port
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan struct{}
}

// TestFleet starts the compose topology from the compose file and checks what an operator
// relies on: every service becomes ready, HAProxy routes each path and gRPC service to the
// service that owns it, an event published through the load balancer reaches a WebSocket
// client, /metrics counts that traffic and a slow consumer, an edge cut off from NATS turns
// not ready, and SIGTERM drains an edge.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole fleet")
	}
	f := &fleet{t: t, p: loadCompose(t), dir: t.TempDir(), addr: map[string]string{}, procs: map[string]*proc{}}
	f.build()
	f.startNATS()
	f.prepare(heraldServices)
	// edge-2 reaches NATS through a proxy the test can cut; edge-1 drains quickly.
	cut := testutil.StartProxy(t, f.addr["nats-0:4222"])
	overrides := map[string]map[string]string{
		"edge-1": {"HERALD_APP_DRAIN_DELAY": "1s", "HERALD_EDGE_DRAIN_WINDOW": drainWindow.String()},
		"edge-2": {"HERALD_NATS_URL": "nats://" + cut.Addr()},
	}
	for _, name := range heraldServices {
		f.start(name, overrides[name])
		f.waitHealthy(name)
	}
	lb, lbGRPC := f.startHAProxy()

	// Routing: every path reaches the service that owns it.
	tok := login(t, "http://"+lb)
	for _, r := range []struct{ method, path, owner, body string }{
		{"POST", "/api/v1/auth/login", "auth", `{"username":"admin","password":"` + adminPassword + `"}`},
		{"GET", "/api/v1/api-keys/me", "ingest-1", ""},
		{"GET", "/api/v3/connections", "edge-1", ""},
		{"GET", "/api/v1/agents/ws", "ingest-1", ""},
	} {
		viaLB := httpStatus(t, r.method, "http://"+lb+r.path, r.body)
		direct := httpStatus(t, r.method, "http://"+f.addr[r.owner+":8080"]+r.path, r.body)
		if viaLB != direct || direct == http.StatusNotFound {
			t.Errorf("%s %s through HAProxy: %d; %s itself answers %d", r.method, r.path, viaLB, r.owner, direct)
		}
	}
	f.checkGRPC(lbGRPC, tok)

	// Delivery through the load balancer, and the metrics it leaves.
	ws := dialDRP(t, "ws://"+lb, "admin:"+adminPassword)
	register(t, ws, "profiles.*.*")
	publish(t, lbGRPC, tok, "global")
	readEvent(t, ws, "global")
	_ = ws.Close()
	edges := f.scrape("edge-1") + f.scrape("edge-2")
	for _, m := range []string{"herald_edge_nats_messages_total", "herald_edge_deliveries_total", "herald_ws_frames_written_total"} {
		if sum(edges, m) < 1 {
			t.Errorf("edges' %s = %v after one delivered event", m, sum(edges, m))
		}
	}
	if v := sum(f.scrape("ingest-1")+f.scrape("ingest-2"), "herald_ingest_publish_duration_seconds_count"); v < 1 {
		t.Errorf("ingests counted %v publishes, want 1", v)
	}
	if v := sum(f.scrape("auth"), `herald_auth_logins_total{result="ok"}`); v < 2 {
		t.Errorf("auth counted %v good logins, want 2", v)
	}
	f.checkSlowConsumer(lbGRPC, tok)

	// Readiness proves delivery: cut edge-2 from NATS.
	cut.Cut()
	start := time.Now()
	testutil.Eventually(t, 5*time.Second, func() error {
		code, body := get(f.addr["edge-2:8080"], "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "nats") {
			return fmt.Errorf("edge-2 /readyz %d %q", code, body)
		}
		return nil
	})
	t.Logf("edge-2 not ready %s after its NATS connection was cut", time.Since(start).Round(time.Millisecond))
	cut.Restore()
	f.waitHealthy("edge-2")

	f.checkDrain("edge-1", tok)
}

// prepare starts Redis, makes the signing key and gives each of the Herald services its
// HTTP and gRPC ports.
func (f *fleet) prepare(services []string) {
	rdb := redistest.Start(f.t)
	f.addr["redis:6379"] = rdb.Addr()
	f.makeSigningKey()
	for _, name := range services {
		for _, port := range []string{"8080", "9090"} {
			f.addr[name+":"+port] = freeAddr(f.t)
		}
	}
}

// drainWindow is edge-1's drain window in the test (compose says 10s).
const drainWindow = 2 * time.Second

// build builds every Herald binary the compose services run, and the extra main packages,
// into f.dir.
func (f *fleet) build(extra ...string) {
	t := f.t
	pkgs := slices.Clone(extra)
	for _, name := range heraldServices {
		pkgs = append(pkgs, "./services/"+f.service(name)+"/cmd/herald-"+f.service(name))
	}
	slices.Sort(pkgs)
	pkgs = slices.Compact(pkgs)
	cmd := exec.Command("go", append([]string{"build", "-o", f.dir + "/"}, pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// service is the Herald service a compose service runs (its SERVICE build argument).
func (f *fleet) service(name string) string { return *f.p.Services[name].Build.Args["SERVICE"] }

// startNATS runs three embedded servers from deploy/nats/cluster.conf, each with its own
// NATS_SERVER_NAME as compose sets it, on local ports with routes to each other.
func (f *fleet) startNATS() {
	t := f.t
	const n = 3
	cluster := make([]int, n)
	for i := range cluster {
		cluster[i] = freePort(t)
	}
	var servers []*server.Server
	for i := range n {
		name := fmt.Sprintf("nats-%d", i)
		env := f.p.Services[name].Environment["NATS_SERVER_NAME"]
		if env == nil || *env != name {
			t.Fatalf("%s: NATS_SERVER_NAME not %s", name, name)
		}
		t.Setenv("NATS_SERVER_NAME", *env)
		o, err := server.ProcessConfigFile(filepath.Join(root, "deploy/nats/cluster.conf"))
		if err != nil {
			t.Fatalf("deploy/nats/cluster.conf: %v", err)
		}
		if !o.JetStream || o.Cluster.Name == "" || len(o.Routes) != n || o.ServerName != name {
			t.Fatalf("cluster.conf: jetstream %v, cluster %q, %d routes, name %q", o.JetStream, o.Cluster.Name, len(o.Routes), o.ServerName)
		}
		for _, r := range o.Routes {
			host, _, _ := net.SplitHostPort(r.Host) // nats-N.nats
			k, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(host, ".nats"), "nats-"))
			if err != nil || k >= n {
				t.Fatalf("cluster.conf: route %s", r)
			}
			r.Host = "127.0.0.1:" + strconv.Itoa(cluster[k])
		}
		o.Host, o.Port, o.HTTPPort = "127.0.0.1", -1, 0
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", cluster[i]
		// Clients keep to the URLs they were given, so the proxy in front of edge-2's one URL
		// really cuts it off (the others list all three nodes and fail over among them).
		o.Cluster.NoAdvertise = true
		o.StoreDir = t.TempDir()
		o.NoLog, o.NoSigs = true, true
		o.LameDuckDuration, o.LameDuckGracePeriod = 2*time.Second, time.Second
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}
	for i, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-%d not ready", i)
		}
		f.addr[fmt.Sprintf("nats-%d:4222", i)] = s.Addr().String()
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		if !anyLeader(servers) {
			return fmt.Errorf("JetStream meta leader not elected yet")
		}
		return nil
	})
}

func anyLeader(servers []*server.Server) bool {
	return slices.ContainsFunc(servers, (*server.Server).JetStreamIsLeader)
}

// makeSigningKey does what compose's signing-key service does, into the keys volume.
func (f *fleet) makeSigningKey() {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		f.t.Fatal(err)
	}
	dir := f.volume("keys")
	if err := os.WriteFile(filepath.Join(dir, "signing-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o400); err != nil {
		f.t.Fatal(err)
	}
}

// volume is the directory standing for a named compose volume.
func (f *fleet) volume(name string) string {
	dir := filepath.Join(f.dir, "volumes", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return dir
}

// env is a service's compose environment with container addresses and mount paths mapped
// to this machine, then overrides.
func (f *fleet) env(name string, overrides map[string]string) []string {
	t := f.t
	s := f.p.Services[name]
	out := []string{}
	for k, v := range s.Environment {
		if v == nil {
			t.Fatalf("%s: %s has no value", name, k)
		}
		val := *v
		switch k {
		case "HERALD_HTTP_ADDR":
			val = f.addr[name+":8080"]
		case "HERALD_GRPC_ADDR":
			val = f.addr[name+":9090"]
		default:
			val = f.mapAddrs(name, k, val)
			for _, vol := range s.Volumes {
				if vol.Type == types.VolumeTypeVolume && strings.HasPrefix(val, vol.Target+"/") {
					val = f.volume(vol.Source) + strings.TrimPrefix(val, vol.Target)
				}
			}
		}
		if o, ok := overrides[k]; ok {
			val = o
		}
		out = append(out, k+"="+val)
	}
	for k, v := range overrides {
		if _, ok := s.Environment[k]; !ok {
			out = append(out, k+"="+v)
		}
	}
	slices.Sort(out)
	return out
}

var hostPort = regexp.MustCompile(`[a-z][a-z0-9.-]*:[0-9]+`)

// mapAddrs replaces every service:port in v; one that names no known service fails.
func (f *fleet) mapAddrs(service, key, v string) string {
	return hostPort.ReplaceAllStringFunc(v, func(hp string) string {
		if a, ok := f.addr[hp]; ok {
			return a
		}
		f.t.Fatalf("%s: %s names %s, which no service of the compose file provides", service, key, hp)
		return hp
	})
}

// start runs a compose service's binary with its environment; every HERALD_* variable must
// be one of the binary's settings (as -print-config lists them).
func (f *fleet) start(name string, overrides map[string]string) {
	t := f.t
	bin := filepath.Join(f.dir, "herald-"+f.service(name))
	env := f.env(name, overrides)
	printed, err := (&exec.Cmd{Path: bin, Args: []string{bin, "-" + config.PrintFlag}, Env: env}).CombinedOutput()
	if err != nil {
		t.Fatalf("%s -print-config: %v\n%s", name, err, printed)
	}
	known := map[string]bool{}
	for line := range strings.Lines(string(printed)) {
		if k, _, ok := strings.Cut(line, "="); ok {
			known[config.EnvName(k)] = true
		}
	}
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !known[k] && k != "HERALD_ADMIN_PASSWORD" {
			t.Errorf("%s: %s is no setting of herald-%s", name, k, f.service(name))
		}
	}
	f.spawn(name, &exec.Cmd{Path: bin, Args: []string{bin}, Env: env})
}

// spawn starts cmd as the fleet's process name with its output kept (and shown if the test
// fails); it is killed when the test ends.
func (f *fleet) spawn(name string, cmd *exec.Cmd) *proc {
	t := f.t
	p := &proc{cmd: cmd, out: &testutil.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.out, 4000))
			keepOutput(t, name, p.out)
		}
	})
	f.procs[name] = p
	return p
}

// waitHealthy polls the service's compose health check URL (its path, on the mapped port).
func (f *fleet) waitHealthy(name string) {
	t := f.t
	test := f.p.Services[name].HealthCheck.Test
	u, err := url.Parse(test[len(test)-1])
	if err != nil || !strings.HasPrefix(u.Host, "127.0.0.1:") {
		t.Fatalf("%s: health check %v has no URL", name, test)
	}
	addr := f.addr[name+":"+u.Port()]
	testutil.Eventually(t, 30*time.Second, func() error {
		select {
		case <-f.procs[name].done:
			t.Fatalf("%s exited:\n%s", name, tail(f.procs[name].out, 4000))
		default:
		}
		if code, body := get(addr, u.RequestURI()); code != http.StatusOK {
			return fmt.Errorf("%s %s: %d %s", name, u.Path, code, body)
		}
		return nil
	})
}

// startHAProxy runs deploy/lb/haproxy.cfg with its bind ports and server addresses mapped.
func (f *fleet) startHAProxy() (httpAddr, grpcAddr string) {
	t := f.t
	b, err := os.ReadFile(filepath.Join(root, "deploy/lb/haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, grpcAddr = freeAddr(t), freeAddr(t)
	var out []string
	for line := range strings.Lines(string(b)) {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 2 && fields[0] == "bind" && fields[1] == ":8080":
			line = strings.Replace(line, ":8080", httpAddr, 1)
		case len(fields) >= 2 && fields[0] == "bind" && fields[1] == ":9090":
			line = strings.Replace(line, ":9090", grpcAddr, 1)
		case len(fields) == 2 && fields[0] == "maxconn":
			// HAProxy needs two file descriptors per connection; compose raises its nofile
			// limit, this machine's limit may be lower.
			line = "    maxconn 4000\n"
		case len(fields) >= 3 && fields[0] == "server":
			host, _, _ := strings.Cut(fields[2], ":")
			line = strings.Replace(line, fields[2], f.mapAddrs("haproxy", fields[1], fields[2]), 1)
			// A check on another port of the same container ("check port 8080").
			if i := slices.Index(fields, "port"); i > 0 && i+1 < len(fields) {
				_, port, _ := net.SplitHostPort(f.mapAddrs("haproxy", fields[1], host+":"+fields[i+1]))
				line = strings.Replace(line, "port "+fields[i+1], "port "+port, 1)
			}
		}
		out = append(out, line)
	}
	cfg := filepath.Join(f.dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(strings.Join(out, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := haproxyBinary(t)
	f.spawn("haproxy", exec.Command(bin, "-db", "-f", cfg))
	// Up once every backend answered its health checks.
	testutil.Eventually(t, 20*time.Second, func() error {
		if code, _ := get(httpAddr, "/readyz"); code != http.StatusOK {
			return fmt.Errorf("haproxy: /readyz %d", code)
		}
		return nil
	})
	return httpAddr, grpcAddr
}

// checkGRPC: each gRPC service through HAProxy reaches a server that implements it.
func (f *fleet) checkGRPC(addr, tok string) {
	t := f.t
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok), 10*time.Second)
	defer cancel()
	if _, err := heraldv1.NewAuthServiceClient(conn).Verify(ctx, &heraldv1.VerifyRequest{Token: tok}); err != nil {
		t.Errorf("AuthService.Verify through HAProxy: %v", err)
	}
	if _, err := heraldv1.NewConnectionServiceClient(conn).List(ctx, &heraldv1.ListRequest{}); err != nil {
		t.Errorf("ConnectionService.List through HAProxy: %v", err)
	}
	_, err = heraldv1.NewAgentServiceClient(conn).RunCommand(ctx, &heraldv1.RunCommandRequest{ServerId: "nobody", Command: "true"})
	if status.Code(err) != codes.Unavailable { // offline: answered by an ingest
		t.Errorf("AgentService.RunCommand through HAProxy: %v, want Unavailable (agent offline)", err)
	}
}

func publish(t *testing.T, addr, tok, key string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok), 10*time.Second)
	defer cancel()
	if _, err := heraldv1.NewEventServiceClient(conn).Publish(ctx, &heraldv1.PublishRequest{
		Event: &heraldv1.Event{Type: "profiles", Action: "save", Key: key}}); err != nil {
		t.Fatalf("EventService.Publish through HAProxy: %v", err)
	}
}

// checkSlowConsumer: a client on edge-1 that stops reading is cut, counted and logged.
func (f *fleet) checkSlowConsumer(lbGRPC, tok string) {
	t := f.t
	before := sum(f.scrape("edge-1"), "herald_ws_slow_consumer_closes_total")
	ws := dialDRP(t, "ws://"+f.addr["edge-1:8080"], "admin:"+adminPassword)
	defer ws.Close()
	register(t, ws, "slow.*.*")
	// The client now reads nothing; events pile up in its TCP buffers, then its send queue.
	conn, err := grpc.NewClient(lbGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok), 60*time.Second)
	defer cancel()
	big := strings.Repeat("x", 3000)
	client := heraldv1.NewEventServiceClient(conn)
	for i := range 4000 {
		if i%100 == 0 && sum(f.scrape("edge-1"), "herald_ws_slow_consumer_closes_total") > before {
			break
		}
		if _, err := client.Publish(ctx, &heraldv1.PublishRequest{Event: &heraldv1.Event{Type: "slow", Action: "fill",
			Key: strconv.Itoa(i), Object: structpb.NewStringValue(big)}}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if v := sum(f.scrape("edge-1"), "herald_ws_slow_consumer_closes_total"); v <= before {
			return fmt.Errorf("slow consumer closes %v", v)
		}
		if v := sum(f.scrape("edge-1"), `herald_edge_disconnects_total{code="4000",dialect="drp"}`); v < 1 {
			return fmt.Errorf("no DRP disconnect counted with 4000")
		}
		if out := f.procs["edge-1"].out.String(); !strings.Contains(out, "closing slow consumer") ||
			!strings.Contains(out, "backlog_messages=") || !strings.Contains(out, "principal=user:admin") {
			return fmt.Errorf("no warn line for the slow consumer with its principal and backlog")
		}
		return nil
	})
}

// checkDrain: SIGTERM on an edge with clients: readiness 503 first, then every client closed
// with 1012, spread over the drain window, and the process gone within its shutdown timeout.
func (f *fleet) checkDrain(name, tok string) {
	t := f.t
	n := 300
	if v, err := strconv.Atoi(os.Getenv("HERALD_DRAIN_CLIENTS")); err == nil && v > 0 {
		n = v
	}
	addr := f.addr[name+":8080"]
	type closed struct {
		code int
		at   time.Time
	}
	results := make(chan closed, n)
	var wg sync.WaitGroup
	for range n {
		ws := dialDRP(t, "ws://"+addr, tok) // a token: verified on the edge, no login each
		wg.Go(func() {
			defer ws.Close()
			_ = ws.SetReadDeadline(time.Now().Add(60 * time.Second))
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					code := -1
					if ce, ok := err.(*websocket.CloseError); ok {
						code = ce.Code
					}
					results <- closed{code, time.Now()}
					return
				}
			}
		})
	}
	// The edge counts them: N connects, N open.
	testutil.Eventually(t, 10*time.Second, func() error {
		page := f.scrape(name)
		if v := sum(page, `herald_edge_connections{dialect="drp"}`); v != float64(n) {
			return fmt.Errorf("herald_edge_connections{dialect=drp} = %v, want %d", v, n)
		}
		if v := sum(page, `herald_edge_connects_total{dialect="drp"}`); v < float64(n) {
			return fmt.Errorf("herald_edge_connects_total{dialect=drp} = %v, want at least %d", v, n)
		}
		return nil
	})
	p := f.procs[name]
	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var notReady time.Time
	testutil.Eventually(t, 5*time.Second, func() error {
		if code, _ := get(addr, "/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d", code)
		}
		notReady = time.Now()
		return nil
	})
	wg.Wait()
	close(results)
	var first, last time.Time
	codes := map[int]int{}
	for r := range results {
		codes[r.code]++
		if first.IsZero() || r.at.Before(first) {
			first = r.at
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	if codes[websocket.CloseServiceRestart] != n {
		t.Errorf("close codes %v, want all %d 1012", codes, n)
	}
	if !notReady.Before(first) {
		t.Errorf("first close %s after SIGTERM, before /readyz turned 503 (%s)", first.Sub(sigterm), notReady.Sub(sigterm))
	}
	if spread := last.Sub(first); spread < drainWindow/2 || spread > drainWindow+time.Second {
		t.Errorf("closes spread over %s, want about the drain window %s", spread, drainWindow)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second): // app.shutdown-timeout in compose
		t.Fatalf("%s still running 30s after SIGTERM", name)
	}
	t.Logf("drain of %d clients: readiness 503 after %s, closes from %s to %s after SIGTERM (spread %s), exit after %s",
		n, notReady.Sub(sigterm).Round(time.Millisecond), first.Sub(sigterm).Round(time.Millisecond),
		last.Sub(sigterm).Round(time.Millisecond), last.Sub(first).Round(time.Millisecond), time.Since(sigterm).Round(time.Millisecond))
	if p.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("%s exited with %d after SIGTERM", name, p.cmd.ProcessState.ExitCode())
	}
}

// scrape returns a service's /metrics page.
func (f *fleet) scrape(name string) string {
	code, body := get(f.addr[name+":8080"], "/metrics")
	if code != http.StatusOK {
		f.t.Fatalf("%s /metrics: %d", name, code)
	}
	return body
}

// sum adds up the samples of a metric in a scrape: every series of name, or the series
// whose labels start with the ones given (name{result="ok"}).
func sum(page, metric string) float64 {
	prefix := metric + "{"
	if strings.Contains(metric, "{") {
		prefix = strings.TrimSuffix(metric, "}")
	}
	var total float64
	for line := range strings.Lines(page) {
		series, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(series, "#") || (series != metric && !strings.HasPrefix(series, prefix)) {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			total += v
		}
	}
	return total
}

func login(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/auth/login", "application/json",
		strings.NewReader(`{"username":"admin","password":"`+adminPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Token == "" {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	return out.Token
}

func dialDRP(t *testing.T, base, token string) *websocket.Conn {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(base+"/api/v3/ws?token="+url.QueryEscape(token), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", base, err, status)
	}
	return ws
}

func register(t *testing.T, ws *websocket.Conn, pattern string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("register "+pattern)); err != nil {
		t.Fatal(err)
	}
	var ack struct{ Type, Action, Key string }
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.ReadJSON(&ack); err != nil || ack.Action != "register" {
		t.Fatalf("register ack %+v: %v", ack, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
}

func readEvent(t *testing.T, ws *websocket.Conn, key string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ev struct{ Type, Key string }
	if err := ws.ReadJSON(&ev); err != nil || ev.Key != key {
		t.Fatalf("event %+v: %v", ev, err)
	}
}

func httpStatus(t *testing.T, method, u, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func get(addr, path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }

// keepOutput writes a failed test's process output whole into $HERALD_FLEET_LOGS, when set.
func keepOutput(t *testing.T, name string, out *testutil.Buffer) {
	dir := os.Getenv("HERALD_FLEET_LOGS")
	if dir == "" {
		return
	}
	file := filepath.Join(dir, fmt.Sprintf("%s-%d-%s.log", t.Name(), os.Getpid(), name))
	if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
		t.Logf("keep %s output: %v", name, err)
	}
}

// tail is the last n bytes of a process's output.
func tail(b *testutil.Buffer, n int) string {
	s := b.String()
	return s[max(0, len(s)-n):]
}
