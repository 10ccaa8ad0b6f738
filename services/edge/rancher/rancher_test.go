package rancher_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/rancher"
	"github.com/heraldhq/herald/services/edge/socket"
)

const allowedOrigin = "https://rancher.example.com"

// password encodes differently in the standard and URL-safe base64 alphabets.
const password = "pa??w>rd"

// rig is a hub and the rancher handler on a real embedded NATS server, served over real HTTP.
type rig struct {
	t      *testing.T
	ns     *server.Server
	nc     *nats.Conn // the publisher's connection
	hub    *hub.Hub
	srv    *httptest.Server
	issuer *token.Issuer
	priv   ed25519.PrivateKey
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ns := natstest.RunServer(t)
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	issuer := token.NewIssuer(priv, time.Hour)
	edgeNC := natstest.Connect(t, ns)
	epoch := natstest.EventStream(t, edgeNC)
	h := hub.New(edgeNC, hub.Config{Epoch: func(string) string { return epoch }}, nil)
	js, err := jetstream.New(edgeNC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	handler := &rancher.Handler{
		Runtime: &socket.Runtime{Hub: h, Auth: access.New(token.NewVerifier(issuer.PublicKey()), edgeNC),
			Upgrader: wsconn.NewUpgrader(wsconn.Config{}, nil), Log: testLog(t), JS: js},
		AllowedOrigins: []string{allowedOrigin}, PingInterval: 50 * time.Millisecond,
	}
	mux := http.NewServeMux()
	for _, p := range []string{rancher.GlobalPath, rancher.ClusterPath, rancher.ProjectPath} {
		mux.Handle("GET "+p, handler)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := h.Shutdown(sctx, wsconn.DisconnectShutdown); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		cancel()
		<-done
		srv.Close()
	})
	r := &rig{t: t, ns: ns, nc: natstest.Connect(t, ns), hub: h, srv: srv, issuer: issuer, priv: priv}
	r.serveLogins(priv)
	return r
}

// serveLogins answers password logins over NATS through the real authwire contract: admin/secret
// may see everything.
func (r *rig) serveLogins(priv ed25519.PrivateKey) {
	ctx, cancel := context.WithCancel(context.Background())
	resp := authwire.Responder{
		PublicKey: priv.Public().(ed25519.PublicKey),
		Login: func(_ context.Context, req authwire.LoginRequest) authwire.LoginReply {
			if req.Username != "admin" || req.Password != password {
				return authwire.LoginError(authwire.CodeUnauthorized, "bad user name or password")
			}
			raw, c, err := r.issuer.Issue(req.Username, []string{"*.*.*"})
			if err != nil {
				return authwire.LoginError(authwire.CodeInternal, err.Error())
			}
			return authwire.LoginReply{Token: raw, ExpiresAt: c.ExpiresAt, User: c.Subject, Permissions: c.Permissions}
		},
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = resp.Serve(ctx, r.nc, authwire.QueueGroup) }()
	r.t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(r.t, 5*time.Second, func() error {
		if !r.ns.GlobalAccount().SubscriptionInterest(authwire.SubjectLogin) {
			return errors.New("auth responder not subscribed yet")
		}
		return nil
	})
}

func (r *rig) token(perms ...string) string {
	r.t.Helper()
	raw, _, err := r.issuer.Issue("alice", perms)
	if err != nil {
		r.t.Fatal(err)
	}
	return raw
}

func (r *rig) url(path string) string {
	return "ws" + strings.TrimPrefix(r.srv.URL, "http") + path
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// dial opens a socket, fails the test on refusal, and returns once the socket is subscribed.
func (r *rig) dial(path string, hdr http.Header) *client {
	r.t.Helper()
	c := r.dialRaw(path, hdr)
	c.subscribed()
	return c
}

// dialRaw opens a socket without waiting for its subscription (a resuming socket sends the
// replay first).
func (r *rig) dialRaw(path string, hdr http.Header) *client {
	r.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(r.url(path), hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		r.t.Fatalf("dial %s: %v (HTTP %d)", path, err, status)
	}
	r.t.Cleanup(func() { ws.Close() })
	return &client{t: r.t, ws: ws}
}

// refused dials expecting a refusal and returns the status and norman error body.
func (r *rig) refused(path string, hdr http.Header) (int, map[string]any) {
	r.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(r.url(path), hdr)
	if err == nil {
		ws.Close()
		r.t.Fatalf("dial %s succeeded, want refusal", path)
	}
	if resp == nil {
		r.t.Fatalf("dial %s: %v (no HTTP response)", path, err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// publish puts an event on NATS exactly as ingest does (normalized, validated, on its subject).
func (r *rig) publish(scope, typ, action, key string, obj any) {
	r.t.Helper()
	b, _ := json.Marshal(obj)
	ev := event.Event{Scope: scope, Type: typ, Action: action, Key: key, Principal: "user:test", Object: b}
	ev.Normalize(time.Now())
	if err := ev.Validate(); err != nil {
		r.t.Fatal(err)
	}
	data, _ := json.Marshal(ev)
	if err := r.nc.Publish(subject.ForEvent(&ev), data); err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

type client struct {
	t  *testing.T
	ws *websocket.Conn
}

type frame struct {
	Name string         `json:"name"`
	Data map[string]any `json:"data"`
	raw  string
}

// next returns the next frame that is not a ping, within 5 s.
func (c *client) next() frame {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for range 1000 {
		if time.Now().After(deadline) {
			break
		}
		f := c.read()
		if f.Name != "ping" {
			return f
		}
	}
	c.t.Fatal("only pings for 5s")
	return frame{}
}

func (c *client) read() frame {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	var f frame
	if err := json.Unmarshal(msg, &f); err != nil {
		c.t.Fatalf("frame %q: %v", msg, err)
	}
	f.raw = string(msg)
	return f
}

// closeCode reads until the connection ends and returns its close code and reason.
func (c *client) closeCode(wait time.Duration) (int, string) {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	_ = c.ws.SetReadDeadline(deadline)
	for range 100000 {
		if _, _, err := c.ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Text
			}
			return -1, err.Error()
		}
	}
	c.t.Fatal("connection still open")
	return 0, ""
}

// expectObject checks a frame's name and its object's type and id.
func expectObject(t *testing.T, f frame, name, typ, id string) {
	t.Helper()
	if f.Name != name || f.Data["type"] != typ || f.Data["id"] != id {
		t.Fatalf("got %s, want %s of %s %s", f.raw, name, typ, id)
	}
}

// subscribed returns once the socket's subscription is in place: the server starts reading
// (and so answers pings) only after the hub has confirmed it with NATS.
func (c *client) subscribed() {
	c.t.Helper()
	pong := make(chan struct{}, 1)
	c.ws.SetPongHandler(func(string) error {
		select {
		case pong <- struct{}{}:
		default:
		}
		return nil
	})
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)); err != nil {
		c.t.Fatal(err)
	}
	// Pongs are seen while reading; norman's pings keep reads returning meanwhile.
	for range 200 {
		select {
		case <-pong:
			return
		default:
		}
		if f := c.read(); f.Name != "ping" {
			c.t.Fatalf("unexpected frame %s before any event was published", f.raw)
		}
	}
	c.t.Fatal("no pong")
}

func TestClusterSocketGetsOnlyItsCluster(t *testing.T) {
	r := newRig(t)
	c := r.dial("/v3/clusters/c-a/subscribe?sockId=3", bearer(r.token("*.*.*")))
	// B's event first: if the socket got it, it would be read before A's.
	r.publish(rancher.Scope("cluster", "c-b"), "node", "create", "c-b:m-1", map[string]any{"name": "b1"})
	r.publish(rancher.Scope("project", "c-a:p-1"), "workload", "create", "w-1", map[string]any{})
	r.publish(event.ScopeGlobal, "cluster", "update", "c-a", map[string]any{})
	r.publish(rancher.Scope("cluster", "c-a"), "node", "create", "c-a:m-1", map[string]any{"name": "a1"})
	f := c.next()
	expectObject(t, f, "resource.change", "node", "c-a:m-1")
	if f.Data["name"] != "a1" {
		t.Fatalf("object fields lost: %s", f.raw)
	}
	r.publish(rancher.Scope("cluster", "c-a"), "node", "remove", "c-a:m-1", map[string]any{"id": "c-a:m-1", "type": "node"})
	expectObject(t, c.next(), "resource.remove", "node", "c-a:m-1")
}

func TestGlobalSocketGetsClustersAndProjects(t *testing.T) {
	r := newRig(t)
	c := r.dial("/v3/subscribe", bearer(r.token("*.*.*")))
	r.publish(rancher.Scope("cluster", "c-a"), "node", "create", "c-a:m-1", map[string]any{})
	r.publish(event.ScopeGlobal, "cluster", "create", "c-a", map[string]any{"name": "prod"})
	r.publish(event.ScopeGlobal, "project", "update", "c-a:p-1", "not an object")
	f := c.next()
	expectObject(t, f, "resource.change", "cluster", "c-a")
	if f.Data["name"] != "prod" {
		t.Fatalf("object fields lost: %s", f.raw)
	}
	f = c.next()
	expectObject(t, f, "resource.change", "project", "c-a:p-1")
	if f.Data["value"] != "not an object" {
		t.Fatalf("non-object not wrapped as value: %s", f.raw)
	}
}

func TestProjectSocketGetsOnlyItsProject(t *testing.T) {
	r := newRig(t)
	c := r.dial("/v3/projects/c-a:p-1/subscribe", bearer(r.token("*.*.*")))
	r.publish(rancher.Scope("project", "c-a:p-2"), "workload", "create", "w-2", map[string]any{})
	r.publish(rancher.Scope("cluster", "c-a"), "node", "create", "c-a:m-1", map[string]any{})
	r.publish(rancher.Scope("project", "c-a:p-1"), "workload", "create", "w-1", map[string]any{})
	expectObject(t, c.next(), "resource.change", "workload", "w-1")
}

func TestPermissionsAndResourceTypes(t *testing.T) {
	r := newRig(t)
	// The token sees nodes and pods only; the socket asks for pods and services.
	c := r.dial("/v3/clusters/c-a/subscribe?resourceTypes=pod&resourceTypes=service",
		bearer(r.token("node.*.*", "pod.*.*")))
	scope := rancher.Scope("cluster", "c-a")
	r.publish(scope, "node", "create", "n-1", map[string]any{})    // permitted, not asked for
	r.publish(scope, "service", "create", "s-1", map[string]any{}) // asked for, not permitted
	r.publish(scope, "pod", "create", "p-1", map[string]any{})
	expectObject(t, c.next(), "resource.change", "pod", "p-1")

	// A type nobody knows is not an error: the socket just waits for it.
	d := r.dial("/v3/subscribe?resourceTypes=nosuchtype", bearer(r.token("*.*.*")))
	r.publish(event.ScopeGlobal, "nosuchtype", "create", "x", map[string]any{})
	expectObject(t, d.next(), "resource.change", "nosuchtype", "x")

	// Outside the token's permissions altogether: refused before the upgrade.
	status, body := r.refused("/v3/subscribe?resourceTypes=secret", bearer(r.token("node.*.*")))
	if status != http.StatusForbidden || body["type"] != "error" {
		t.Fatalf("got %d %v, want 403 with a norman error", status, body)
	}
}

func TestAuthentication(t *testing.T) {
	r := newRig(t)
	tok := r.token("*.*.*")
	basic := func(enc *base64.Encoding, cred string) http.Header {
		return http.Header{"Authorization": {"basic " + enc.EncodeToString([]byte(cred))}}
	}
	cases := map[string]http.Header{
		"bearer":           bearer(tok),
		"basic url-safe":   basic(base64.URLEncoding, "admin:"+password),
		"basic standard":   basic(base64.StdEncoding, "admin:"+password),
		"cookie":           {"Cookie": {rancher.CookieName + "=" + tok}, "Origin": {allowedOrigin}},
		"cookie same host": {"Cookie": {rancher.CookieName + "=" + tok}, "Origin": {r.srv.URL}},
		"header wins over a bad cookie": {"Authorization": {"Bearer " + tok},
			"Cookie": {rancher.CookieName + "=garbage"}, "Origin": {"https://evil.example"}},
	}
	for name, hdr := range cases {
		t.Run(name, func(t *testing.T) {
			c := r.dial("/v3/subscribe", hdr)
			c.t = t
			if f := c.read(); f.Name != "ping" || len(f.Data) != 0 || f.raw != `{"name":"ping","data":{}}` {
				t.Fatalf("first frame %s, want norman's ping", f.raw)
			}
		})
	}
	refusals := []struct {
		name   string
		hdr    http.Header
		status int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"cookie from a foreign origin", http.Header{"Cookie": {rancher.CookieName + "=" + tok}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"cookie without origin", http.Header{"Cookie": {rancher.CookieName + "=" + tok}}, http.StatusForbidden},
		{"bad password", basic(base64.URLEncoding, "admin:wrong"), http.StatusUnauthorized},
		{"bad token", bearer("not-a-token"), http.StatusUnauthorized},
		{"bad cookie", http.Header{"Cookie": {rancher.CookieName + "=garbage"}, "Origin": {allowedOrigin}}, http.StatusUnauthorized},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			status, body := r.refused("/v3/subscribe", tc.hdr)
			if status != tc.status || body["type"] != "error" || body["status"] != float64(tc.status) || body["message"] == "" {
				t.Fatalf("got %d %v, want %d with a norman error body", status, body, tc.status)
			}
		})
	}
}

func TestClientMessagesIgnoredAndExpiryCloses(t *testing.T) {
	r := newRig(t)
	short := token.NewIssuer(r.priv, 2*time.Second)
	raw, _, err := short.Issue("alice", []string{"*.*.*"})
	if err != nil {
		t.Fatal(err)
	}
	c := r.dial("/v3/subscribe", bearer(raw))
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(`{"whatever":1}`)); err != nil {
		t.Fatal(err)
	}
	r.publish(event.ScopeGlobal, "setting", "update", "s", map[string]any{})
	expectObject(t, c.next(), "resource.change", "setting", "s")
	code, reason := c.closeCode(5 * time.Second)
	if code != wsconn.DisconnectTokenExpired.Code || !strings.Contains(reason, "expired") {
		t.Fatalf("closed %d %q, want %d token expired", code, reason, wsconn.DisconnectTokenExpired.Code)
	}
}

func TestShutdownClosesWithCode(t *testing.T) {
	r := newRig(t)
	c := r.dial("/v3/subscribe", bearer(r.token("*.*.*")))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = r.hub.Shutdown(ctx, wsconn.DisconnectShutdown) }()
	if code, reason := c.closeCode(5 * time.Second); code != 1001 || reason == "" {
		t.Fatalf("closed %d %q, want 1001 with a reason", code, reason)
	}
}

// TestResumeFromPosition: frames carry the event's position; a socket opened with ?since= gets
// the stored events after it, then resource.resumed, then live ones; an unknown epoch is
// resource.error 410, as a Kubernetes watch says "too old".
func TestResumeFromPosition(t *testing.T) {
	r := newRig(t)
	tok := r.token("*.*.*")
	a := r.dial(rancher.GlobalPath, bearer(tok))
	a.subscribed()
	var positions []string
	for i := range 3 {
		r.publish(event.ScopeGlobal, "cluster", "update", fmt.Sprint("c-", i), nil)
		var f struct {
			Name     string `json:"name"`
			Position string `json:"position"`
		}
		if err := json.Unmarshal([]byte(a.next().raw), &f); err != nil || f.Position == "" {
			t.Fatalf("frame %d: %+v (%v), want a position", i, f, err)
		}
		positions = append(positions, f.Position)
	}
	b := r.dialRaw(rancher.GlobalPath+"?since="+url.QueryEscape(positions[0]), bearer(tok))
	for _, want := range []string{"c-1", "c-2"} {
		if f := b.next(); f.Name != "resource.change" || f.Data["id"] != want {
			t.Fatalf("replay: got %s, want %s", f.raw, want)
		}
	}
	if f := b.next(); f.Name != "resource.resumed" || f.Data["replayed"] != float64(2) || f.Data["position"] != positions[2] {
		t.Fatalf("got %s, want resource.resumed with 2 replayed up to %s", f.raw, positions[2])
	}
	r.publish(event.ScopeGlobal, "cluster", "update", "c-3", nil)
	if f := b.next(); f.Data["id"] != "c-3" {
		t.Fatalf("live after resume: got %s", f.raw)
	}
	old := r.dialRaw(rancher.GlobalPath+"?resourceVersion=zzzz:1", bearer(tok))
	if f := old.next(); f.Name != "resource.error" || f.Data["status"] != float64(410) || !strings.Contains(f.raw, "too old") {
		t.Fatalf("got %s, want resource.error 410 too old", f.raw)
	}
}
