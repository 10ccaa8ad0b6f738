package herald_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/edge"
	"github.com/heraldhq/herald/services/ingest"
)

// fleetTTL is the registry bound in these tests: a dead instance's entries go within it
// (plus one sweep period, TTL/3).
const fleetTTL = 1500 * time.Millisecond

type fleet struct {
	t      *testing.T
	ns     *server.Server
	redis  *redistest.Server
	issuer *token.Issuer
}

type instance struct {
	id    string
	url   string // http://127.0.0.1:port
	proxy *testutil.Proxy
	nc    *nats.Conn
	edge  *edge.Edge
	grpc  string
	stop  func()
}

// apiKeys verifies agent keys "key-<server>" for any server.
type apiKeys struct{}

func (apiKeys) VerifyAPIKey(_ context.Context, key string) (authwire.APIKeyInfo, error) {
	sid, ok := strings.CutPrefix(key, "key-")
	if !ok {
		return authwire.APIKeyInfo{}, authwire.ErrUnauthorized
	}
	return authwire.APIKeyInfo{KeyID: "k-" + sid, ServerID: sid}, nil
}

// registryFor connects an instance to Redis through its own proxy, so a test can cut one
// instance off Redis (a process that vanished) without touching the others.
func (f *fleet) registryFor() (registry.Registry, *testutil.Proxy) {
	p := testutil.StartProxy(f.t, f.redis.Addr())
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, DialTimeout: 300 * time.Millisecond})
	f.t.Cleanup(func() { rdb.Close() })
	return registry.NewRedis(rdb, "fleet:"), p
}

func (f *fleet) startEdge(id string) *instance {
	t := f.t
	reg, proxy := f.registryFor()
	nc := natstest.Connect(t, f.ns)
	e, err := edge.New(edge.Config{RegistryTTL: fleetTTL}, edge.Deps{NC: nc, Verifier: token.NewVerifier(f.issuer.PublicKey()),
		Registry: reg, Instance: id, AnnounceConnections: true})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.Register(mux)
	srv := httptest.NewServer(e.TrackREST(mux))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	e.RegisterGRPC(gs)
	go func() { _ = gs.Serve(lis) }()
	stop := f.run(e.Run, func() { gs.Stop(); srv.Close() })
	<-e.Ready()
	return &instance{id: id, url: srv.URL, proxy: proxy, nc: nc, edge: e, grpc: lis.Addr().String(), stop: stop}
}

func (f *fleet) startIngest(id string) *instance {
	t := f.t
	reg, proxy := f.registryFor()
	nc := natstest.Connect(t, f.ns)
	s, err := ingest.New(ingest.Config{RegistryTTL: fleetTTL}, ingest.Deps{NC: nc, Verifier: token.NewVerifier(f.issuer.PublicKey()),
		APIKeys: apiKeys{}, Registry: reg, Instance: id, AnnounceConnections: true})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	stop := f.run(s.Run, srv.Close)
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("ingest not ready")
	}
	return &instance{id: id, url: srv.URL, proxy: proxy, nc: nc, stop: stop}
}

func (f *fleet) run(run func(context.Context) error, after func()) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done; after() }) }
	f.t.Cleanup(stop)
	return stop
}

func (f *fleet) token(user string, perms ...string) string {
	raw, _, err := f.issuer.Issue(user, perms)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

type wsClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialWS(t *testing.T, u string) *wsClient {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", u, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	return &wsClient{t: t, ws: ws}
}

func wsURL(base, path string) string { return "ws" + strings.TrimPrefix(base, "http") + path }

func (c *wsClient) addr() string { return c.ws.LocalAddr().String() }

func (c *wsClient) send(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) read() (map[string]json.RawMessage, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	return m, json.Unmarshal(msg, &m)
}

func str(m map[string]json.RawMessage, k string) string {
	var s string
	_ = json.Unmarshal(m[k], &s)
	return s
}

// drp opens a DRP socket and registers pattern, checking the acknowledgement.
func drpClient(t *testing.T, in *instance, tok, pattern string) *wsClient {
	t.Helper()
	c := dialWS(t, wsURL(in.url, "/api/v3/ws?token="+url.QueryEscape(tok)))
	c.expectAck(pattern)
	return c
}

func (c *wsClient) expectAck(pattern string) {
	c.t.Helper()
	c.send("register " + pattern)
	for range 100 {
		m, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for the ack of %s: %v", pattern, err)
		}
		if str(m, "Type") == "websocket" && str(m, "Key") == pattern {
			return
		}
	}
	c.t.Fatalf("no ack for %s", pattern)
}

func agentClient(t *testing.T, in *instance, server string) *wsClient {
	t.Helper()
	c := dialWS(t, wsURL(in.url, ingest.AgentSocketPath))
	c.send(`{"type":"auth","api_key":"key-` + server + `"}`)
	m, err := c.read()
	if err != nil || str(m, "type") != "auth_success" {
		t.Fatalf("agent %s auth: %v %v", server, m, err)
	}
	return c
}

func getConns(in *instance, tok, path string) ([]registry.Conn, int, error) {
	req, _ := http.NewRequest("GET", in.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var e struct {
			Messages []string
			Code     int
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return nil, resp.StatusCode, fmt.Errorf("HTTP %d: %v (body Code %d)", resp.StatusCode, e.Messages, e.Code)
	}
	var cs []registry.Conn
	return cs, 200, json.NewDecoder(resp.Body).Decode(&cs)
}

// want describes a connection the listing must hold.
type want struct {
	addr, instance, endpoint, principal, server string
}

// listed checks that the listing from in holds every w with the right fields, and only
// WebSockets from alive (plus REST requests).
func listed(in *instance, tok string, ws []want) error {
	cs, _, err := getConns(in, tok, "/api/v3/connections")
	if err != nil {
		return err
	}
	byAddr := map[string]registry.Conn{}
	sockets := 0
	for _, c := range cs {
		byAddr[c.RemoteAddr] = c
		if c.Websocket {
			sockets++
		}
	}
	for _, w := range ws {
		c, ok := byAddr[w.addr]
		if !ok {
			return fmt.Errorf("%s on %s missing from %s's listing (%d entries)", w.addr, w.instance, in.id, len(cs))
		}
		if c.Instance != w.instance || c.Endpoint != w.endpoint || c.Principal != w.principal ||
			c.ServerID != w.server || !c.Websocket || c.CreateTime.IsZero() || c.ID == "" {
			return fmt.Errorf("listing from %s: %+v, want %+v", in.id, c, w)
		}
	}
	if sockets != len(ws) {
		return fmt.Errorf("listing from %s has %d WebSockets, want %d", in.id, sockets, len(ws))
	}
	return nil
}

// events collects connection events seen by a DRP watcher.
type events struct {
	mu  sync.Mutex
	got []registry.Conn
	act []string
}

func (e *events) watch(c *wsClient) {
	go func() {
		for {
			m, err := c.read()
			if err != nil {
				return
			}
			if str(m, "Type") != "connections" {
				continue
			}
			var conn registry.Conn
			_ = json.Unmarshal(m["Object"], &conn)
			e.mu.Lock()
			e.got = append(e.got, conn)
			e.act = append(e.act, str(m, "Action")+"."+str(m, "Key"))
			e.mu.Unlock()
		}
	}()
}

func (e *events) has(action, id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, c := range e.got {
		if c.ID == id && strings.HasPrefix(e.act[i], action+"."+c.Principal) {
			return true
		}
	}
	return false
}

func TestFleetConnections(t *testing.T) {
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, ns: natstest.RunServer(t), redis: redistest.Start(t), issuer: token.NewIssuer(priv, time.Hour)}
	e1, e2 := f.startEdge("edge-1"), f.startEdge("edge-2")
	i1, i2 := f.startIngest("ingest-1"), f.startIngest("ingest-2")
	admin := f.token("admin", "*.*.*")
	alice := f.token("alice", "machines.*.*", "metrics.read.*")

	var seen events
	watcher := drpClient(t, e1, admin, "connections.*.*")
	seen.watch(watcher)
	b1 := drpClient(t, e1, alice, "machines.*.*")
	b2 := drpClient(t, e2, alice, "machines.*.*")
	b3 := drpClient(t, e2, alice, "machines.*.*")
	viewer := dialWS(t, wsURL(e2.url, "/api/v1/ws/metrics/web-1"))
	viewer.send(`{"type":"auth","token":"` + alice + `"}`)
	if m, err := viewer.read(); err != nil || str(m, "type") != "auth_success" {
		t.Fatalf("viewer auth: %v %v", m, err)
	}
	a1 := agentClient(t, i1, "web-1")
	a2 := agentClient(t, i2, "web-2")
	outer := t
	all := []want{
		{watcher.addr(), "edge-1", "drp", "user:admin", ""},
		{b1.addr(), "edge-1", "drp", "user:alice", ""},
		{b2.addr(), "edge-2", "drp", "user:alice", ""},
		{b3.addr(), "edge-2", "drp", "user:alice", ""},
		{viewer.addr(), "edge-2", "metrics", "user:alice", "web-1"},
		{a1.addr(), "ingest-1", "agent", "agent:k-web-1", "web-1"},
		{a2.addr(), "ingest-2", "agent", "agent:k-web-2", "web-2"},
	}

	t.Run("ListingFromAnyEdge", func(t *testing.T) {
		for _, in := range []*instance{e1, e2} {
			testutil.Eventually(t, 5*time.Second, func() error { return listed(in, admin, all) })
		}
		cs, _, err := getConns(e2, admin, "/api/v3/machines/web-2/connections")
		if err != nil || len(cs) != 1 || cs[0].RemoteAddr != a2.addr() || cs[0].Instance != "ingest-2" {
			t.Errorf("machines/web-2/connections = %+v, %v; want the agent on ingest-2", cs, err)
		}
		req, _ := http.NewRequest("GET", e1.url+"/api/v3/connections/"+b2.addr(), nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var one registry.Conn
		_ = json.NewDecoder(resp.Body).Decode(&one)
		resp.Body.Close()
		if resp.StatusCode != 200 || one.Instance != "edge-2" || one.RemoteAddr != b2.addr() {
			t.Errorf("GET connections/%s = %d %+v", b2.addr(), resp.StatusCode, one)
		}
		// The listing request is itself listed while in flight, as a REST connection.
		cs, _, _ = getConns(e1, admin, "/api/v3/connections")
		rest := 0
		for _, c := range cs {
			if !c.Websocket && c.Endpoint == "rest" && c.Principal == "user:admin" && c.Instance == "edge-1" {
				rest++
			}
		}
		if rest == 0 {
			t.Error("the REST request in flight is not listed")
		}
		if _, code, _ := getConns(e1, alice, "/api/v3/connections"); code != http.StatusForbidden {
			t.Errorf("listing without connections.list: HTTP %d, want 403", code)
		}
		if _, code, _ := getConns(e1, "garbage", "/api/v3/connections"); code != http.StatusUnauthorized {
			t.Errorf("listing with a bad token: HTTP %d, want 401", code)
		}
		// connections.create events reached the watcher for browsers and agents alike.
		cs, _, _ = getConns(e1, admin, "/api/v3/connections")
		testutil.Eventually(t, 5*time.Second, func() error {
			for _, c := range cs {
				if c.Websocket && c.RemoteAddr != watcher.addr() && !seen.has("create", c.ID) {
					return fmt.Errorf("no connections.create.%s for %s on %s", c.Principal, c.RemoteAddr, c.Instance)
				}
			}
			return nil
		})
	})

	t.Run("KickClosesOnlyThatConnection", func(t *testing.T) {
		gc, err := grpc.NewClient(e1.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer gc.Close()
		cli := heraldv1.NewConnectionServiceClient(gc)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+admin)
		if _, err := cli.Kick(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+alice),
			&heraldv1.KickRequest{RemoteAddr: b2.addr()}); err == nil {
			t.Error("Kick without connections.kick succeeded")
		}
		// b2 is held by edge-2; the call goes to edge-1.
		resp, err := cli.Kick(ctx, &heraldv1.KickRequest{RemoteAddr: b2.addr()})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetConnection().GetInstance() != "edge-2" {
			t.Errorf("kicked %+v", resp.GetConnection())
		}
		_, _, err = b2.ws.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != wsconn.DisconnectKicked.Code || ce.Text != "kicked by user:admin" {
			t.Fatalf("kicked client read %v, want close 4003 kicked by user:admin", err)
		}
		// Nobody else: b3 on the same edge, b1 elsewhere and the agents still answer.
		b3.expectAck("machines.create.*")
		b1.expectAck("machines.create.*")
		a2.send(`{"type":"ping"}`)
		if m, err := a2.read(); err != nil || str(m, "type") != "pong" {
			t.Fatalf("agent after kick: %v %v", m, err)
		}
		all = slicesDelete(all, b2.addr())
		testutil.Eventually(t, 5*time.Second, func() error { return listed(e1, admin, all) })
		// gRPC List with a filter: exactly the DRP sockets still open, the kicked one gone.
		testutil.Eventually(t, 5*time.Second, func() error {
			list, err := cli.List(ctx, &heraldv1.ListRequest{Endpoint: "drp"})
			if err != nil {
				return err
			}
			var got, want []string
			for _, c := range list.GetConnections() {
				if c.GetEndpoint() != "drp" || !c.GetWebsocket() {
					return fmt.Errorf("List(endpoint drp) returned %v", c)
				}
				got = append(got, c.GetRemoteAddr())
			}
			for _, w := range all {
				if w.endpoint == "drp" {
					want = append(want, w.addr)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				return fmt.Errorf("List(endpoint drp) = %v, want %v", got, want)
			}
			return nil
		})
		testutil.Eventually(t, 5*time.Second, func() error {
			if !seen.has("delete", resp.GetConnection().GetId()) {
				return errors.New("no connections.delete for the kicked connection")
			}
			return nil
		})
	})

	t.Run("RedisRestartedEmpty", func(t *testing.T) {
		f.redis.Stop()
		// Connections keep working and new ones are accepted (they live on after this subtest).
		b4 := drpClient(outer, e2, alice, "machines.*.*")
		a3 := agentClient(outer, i1, "web-3")
		b1.expectAck("machines.update.*")
		testutil.Eventually(t, 5*time.Second, func() error {
			if e1.edge.Tracker().Check(context.Background()) == nil {
				return errors.New("edge-1 not degraded while Redis is down")
			}
			return nil
		})
		if _, code, _ := getConns(e1, admin, "/api/v3/connections"); code != http.StatusServiceUnavailable {
			t.Errorf("listing while Redis is down: HTTP %d, want 503", code)
		}
		f.redis.Restart()
		all = append(all,
			want{b4.addr(), "edge-2", "drp", "user:alice", ""},
			want{a3.addr(), "ingest-1", "agent", "agent:k-web-3", "web-3"})
		testutil.Eventually(t, 10*time.Second, func() error { return listed(e1, admin, all) })
		testutil.Eventually(t, 5*time.Second, func() error { return e1.edge.Tracker().Check(context.Background()) })
	})

	t.Run("InstanceGoneWithoutGoodbye", func(t *testing.T) {
		// edge-2 loses Redis and NATS, then stops: it can neither remove its entries nor
		// announce their end. Another instance must.
		var gone []registry.Conn
		cs, _, err := getConns(e1, admin, "/api/v3/connections")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Instance == "edge-2" && c.Websocket {
				gone = append(gone, c)
			}
		}
		if len(gone) < 2 {
			t.Fatalf("edge-2 holds %d sockets, want at least 2", len(gone))
		}
		e2.proxy.Cut()
		e2.nc.Close()
		start := time.Now()
		e2.stop()
		var left []want
		for _, w := range all {
			if w.instance != "edge-2" {
				left = append(left, w)
			}
		}
		testutil.Eventually(t, fleetTTL+5*time.Second, func() error {
			err := listed(e1, admin, left)
			if err != nil {
				cs, _, _ := getConns(e1, admin, "/api/v3/connections")
				return fmt.Errorf("%w; listing: %+v", err, cs)
			}
			return nil
		})
		testutil.Eventually(t, 5*time.Second, func() error {
			for _, c := range gone {
				if !seen.has("delete", c.ID) {
					return fmt.Errorf("no connections.delete.%s for %s", c.Principal, c.RemoteAddr)
				}
			}
			return nil
		})
		t.Logf("edge-2's %d entries gone and announced %s after it stopped", len(gone), time.Since(start).Round(10*time.Millisecond))
	})
}

func slicesDelete(ws []want, addr string) []want {
	out := ws[:0:0]
	for _, w := range ws {
		if w.addr != addr {
			out = append(out, w)
		}
	}
	return out
}
