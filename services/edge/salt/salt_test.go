package salt_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventpub"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/salt"
	"github.com/heraldhq/herald/services/edge/socket"
)

var stampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$`)

// bus is a real NATS server with the HERALD_EVENTS stream, as ingest creates it, and a
// publisher that stores events the way ingest does (pkg/eventpub).
type bus struct {
	t      *testing.T
	ns     *server.Server
	js     jetstream.JetStream
	epoch  string
	issuer *token.Issuer
	priv   ed25519.PrivateKey
	state  *agentstate.Memory
}

func newBus(t *testing.T) *bus {
	t.Helper()
	ns := natstest.RunServer(t)
	nc := natstest.Connect(t, ns)
	epoch := natstest.EventStream(t, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &bus{t: t, ns: ns, js: js, epoch: epoch, issuer: token.NewIssuer(priv, time.Hour), priv: priv, state: agentstate.NewMemory()}
}

func (b *bus) token(perms ...string) string {
	b.t.Helper()
	raw, _, err := b.issuer.Issue("alice", perms)
	if err != nil {
		b.t.Fatal(err)
	}
	return raw
}

// publish stores an agent-style event (global scope) in the stream, as ingest's emit does.
func (b *bus) publish(typ, action, key string, obj any) {
	b.t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		b.t.Fatal(err)
	}
	ev := &event.Event{Time: time.Now(), Type: typ, Action: action, Key: key,
		Scope: event.ScopeGlobal, Principal: "agent:k1", Object: raw}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := eventpub.Publish(ctx, b.js, ev); err != nil {
		b.t.Fatal(err)
	}
}

// facts does what ingest does with an agent's facts message: store, then publish.
func (b *bus) facts(serverID string, facts map[string]any) {
	b.t.Helper()
	raw, _ := json.Marshal(facts)
	if err := b.state.PutFacts(context.Background(), serverID, raw); err != nil {
		b.t.Fatal(err)
	}
	b.publish("agents", "facts", serverID, facts)
}

// jobNew and jobRet are the Objects ingest publishes for a command (services/ingest/jobs.go).
func (b *bus) jobNew(jid, serverID, command string, start time.Time) {
	b.publish("jobs", "new", jid, map[string]any{
		"jid": jid, "tgt": serverID, "tgt_type": "list", "fun": "cmd.run", "arg": []string{command},
		"minions": []string{serverID}, "user": "user:admin", "start_time": start.UTC().Format(time.RFC3339Nano),
	})
}

func (b *bus) jobRet(jid, serverID, output string, code int) {
	b.publish("jobs", "ret", jid, map[string]any{
		"jid": jid, "id": serverID, "fun": "cmd.run", "return": output, "retcode": code,
		"success": code == 0, "duration_ms": 12,
	})
}

// edge is one edge's hub and the two salt handlers, served over real HTTP.
type edge struct {
	t   *testing.T
	hub *hub.Hub
	srv *httptest.Server
}

func (b *bus) startEdge() *edge {
	t := b.t
	t.Helper()
	nc := natstest.Connect(t, b.ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(nc, hub.Config{Epoch: func(string) string { return b.epoch }}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	auth := access.New(token.NewVerifier(b.issuer.PublicKey()), nc)
	up := wsconn.NewUpgrader(wsconn.Config{}, nil)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	mux := http.NewServeMux()
	rt := &socket.Runtime{Hub: h, Auth: auth, Upgrader: up, Log: log, JS: js}
	mux.Handle("GET "+salt.AllEventsPath, &salt.Handler{Kind: salt.AllEvents, Runtime: rt})
	mux.Handle("GET "+salt.FormattedEventsPath, &salt.Handler{Kind: salt.FormattedEvents, Runtime: rt,
		JS: js, Facts: b.state})
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
	return &edge{t: t, hub: h, srv: srv}
}

func (e *edge) url(path string) string { return "ws" + strings.TrimPrefix(e.srv.URL, "http") + path }

func (e *edge) dial(path string) *client {
	e.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(e.url(path), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial %s: %v (HTTP %d)", path, err, status)
	}
	e.t.Cleanup(func() { ws.Close() })
	return newClient(e.t, ws)
}

// client reads on its own goroutine so pongs (the barrier after client messages) are seen.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan string
	pongs  chan struct{}
	end    chan error // the read error that ended the connection
}

func newClient(t *testing.T, ws *websocket.Conn) *client {
	c := &client{t: t, ws: ws, frames: make(chan string, 64), pongs: make(chan struct{}, 8), end: make(chan error, 1)}
	ws.SetPongHandler(func(string) error { c.pongs <- struct{}{}; return nil })
	go func() {
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				c.end <- err
				return
			}
			c.frames <- string(msg)
		}
	}()
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// barrier returns once the server has handled every message sent before it: the server's read
// loop answers the ping only after it has handled what came earlier.
func (c *client) barrier() {
	c.t.Helper()
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-c.pongs:
	case <-time.After(5 * time.Second):
		c.t.Fatal("no pong")
	}
}

func (c *client) next() string {
	c.t.Helper()
	select {
	case msg := <-c.frames:
		return msg
	case err := <-c.end:
		c.t.Fatalf("connection ended: %v", err)
	case <-time.After(5 * time.Second):
		c.t.Fatal("no frame within 5s")
	}
	return ""
}

// closed waits for the connection to end and returns its close code and reason.
func (c *client) closed() (int, string) {
	c.t.Helper()
	for range 1000 {
		select {
		case <-c.frames:
		case err := <-c.end:
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Text
			}
			return -1, err.Error()
		case <-time.After(5 * time.Second):
			c.t.Fatal("connection still open")
		}
	}
	c.t.Fatal("connection still open")
	return 0, ""
}

type tagged struct {
	Tag  string         `json:"tag"`
	Data map[string]any `json:"data"`
}

func (c *client) nextTagged() tagged {
	c.t.Helper()
	msg := c.next()
	var f tagged
	if err := json.Unmarshal([]byte(msg), &f); err != nil {
		c.t.Fatalf("frame %q is not {tag,data}: %v", msg, err)
	}
	if s, _ := f.Data["_stamp"].(string); !stampRE.MatchString(s) {
		c.t.Fatalf("frame %q: _stamp %q is not Salt's", msg, s)
	}
	return f
}

func TestAllEventsWaitsForReadyThenSendsPermittedEvents(t *testing.T) {
	b := newBus(t)
	e := b.startEdge()
	c := e.dial("/all_events/" + b.token("jobs.*.*", "profiles.*.*"))
	// Near misses of the ready message change nothing: Salt compares with ==.
	c.send("websocket client ready\n")
	c.send(" websocket client ready")
	c.send("hello")
	b.publish("profiles", "save", "early", map[string]any{"Name": "early"})
	c.barrier()
	if n := e.hub.Subscriptions(); n != 0 {
		t.Fatalf("%d subscriptions before ready, want 0", n)
	}
	select {
	case msg := <-c.frames:
		t.Fatalf("got %q before the ready message", msg)
	default:
	}
	c.send(salt.ReadyMessage)
	c.send(salt.ReadyMessage) // a second ready is ignored
	c.barrier()               // ready is handled on the read loop: the subscription is in place
	jid := "20260102030405123456"
	b.publish("machines", "save", "m1", map[string]any{"Name": "m1"}) // not permitted
	b.jobNew(jid, "web-1", "uptime", time.Now())
	f := c.nextTagged()
	if f.Tag != "salt/job/"+jid+"/new" {
		t.Fatalf("tag %q, want salt/job/%s/new", f.Tag, jid)
	}
	for _, k := range []string{"jid", "tgt", "tgt_type", "fun", "minions", "arg", "user"} {
		if _, ok := f.Data[k]; !ok {
			t.Fatalf("new job data lacks %q: %v", k, f.Data)
		}
	}
	b.jobRet(jid, "web-1", "up 3 days\n", 0)
	f = c.nextTagged()
	if f.Tag != "salt/job/"+jid+"/ret/web-1" || f.Data["return"] != "up 3 days\n" ||
		f.Data["retcode"] != float64(0) || f.Data["success"] != true || f.Data["id"] != "web-1" || f.Data["fun"] != "cmd.run" {
		t.Fatalf("ret frame %+v", f)
	}
	b.publish("profiles", "save", "global", map[string]any{"Name": "global"})
	f = c.nextTagged()
	if f.Tag != "herald/profiles/save/global" || f.Data["Name"] != "global" {
		t.Fatalf("profile frame %+v", f)
	}
}

func TestAllEventsRefusesBadTokens(t *testing.T) {
	b := newBus(t)
	e := b.startEdge()
	for _, path := range []string{"/all_events/nope", "/formatted_events/" + strings.Repeat("ab", 32)} {
		ws, resp, err := websocket.DefaultDialer.Dial(e.url(path), nil)
		if err == nil {
			ws.Close()
			t.Fatalf("%s: upgraded, want 401", path)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %v, want 401", path, resp)
		}
	}
}

func TestTokenExpiryCloses(t *testing.T) {
	b := newBus(t)
	e := b.startEdge()
	raw, _, err := token.NewIssuer(b.priv, 2*time.Second).Issue("alice", []string{"*.*.*"})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/all_events/", "/formatted_events/"}
	clients := make([]*client, len(paths))
	for i, path := range paths {
		clients[i] = e.dial(path + raw)
		clients[i].send(salt.ReadyMessage)
	}
	for i, c := range clients {
		if code, reason := c.closed(); code != wsconn.DisconnectTokenExpired.Code || reason != "token expired" {
			t.Fatalf("%s closed %d %q, want %d token expired", paths[i], code, reason, wsconn.DisconnectTokenExpired.Code)
		}
	}
}

func TestFormattedEventsOnAnEdgeStartedLater(t *testing.T) {
	b := newBus(t)
	// An agent connected and a command ran before this edge existed.
	b.facts("web-1", map[string]any{"os": "linux", "hostname": "web-1"})
	b.facts("db-1", map[string]any{"os": "linux", "hostname": "db-1"}) // not permitted
	jid := "20260102030405000001"
	b.jobNew(jid, "web-1", "uname -a", time.Date(2026, 1, 2, 3, 4, 5, 1000, time.UTC))
	b.jobRet(jid, "web-1", "Linux web-1\n", 0)

	e := b.startEdge()
	c := e.dial("/formatted_events/" + b.token("jobs.*.*", "agents.*.web-1"))
	c.send(salt.ReadyMessage)

	var minions struct {
		Minions map[string]struct {
			ID     string         `json:"id"`
			Grains map[string]any `json:"grains"`
		} `json:"minions"`
	}
	snapshot(t, c.next(), &minions)
	if m := minions.Minions["web-1"]; m.ID != "web-1" || m.Grains["os"] != "linux" || len(minions.Minions) != 1 {
		t.Fatalf("minions %+v, want web-1 alone with its grains", minions.Minions)
	}
	type jobs struct {
		Jobs map[string]struct {
			JID       string                    `json:"jid"`
			StartTime string                    `json:"start_time"`
			Fun       string                    `json:"fun"`
			Tgt       string                    `json:"tgt"`
			TgtType   string                    `json:"tgt_type"`
			State     string                    `json:"state"`
			Minions   map[string]map[string]any `json:"minions"`
		} `json:"jobs"`
	}
	var js jobs
	snapshot(t, c.next(), &js)
	j, ok := js.Jobs[jid]
	if !ok {
		t.Fatalf("job %s missing from %+v", jid, js.Jobs)
	}
	ret := j.Minions["web-1"]
	if j.JID != jid || j.Fun != "cmd.run" || j.Tgt != "web-1" || j.TgtType != "list" || j.State != "complete" ||
		j.StartTime != "2026-01-02T03:04:05.000001" || ret["return"] != "Linux web-1\n" || ret["retcode"] != float64(0) || ret["success"] != true {
		t.Fatalf("job %+v", j)
	}

	// Live events keep the view current: a new job runs, then returns.
	jid2 := "20260102030406000002"
	b.jobNew(jid2, "web-1", "false", time.Now())
	js = jobs{}
	snapshot(t, c.next(), &js)
	if j := js.Jobs[jid2]; j.State != "running" || j.Minions["web-1"]["success"] != false || len(js.Jobs) != 2 {
		t.Fatalf("after jobs.new: %+v", js.Jobs)
	}
	b.jobRet(jid2, "web-1", "", 1)
	js = jobs{}
	snapshot(t, c.next(), &js)
	if j := js.Jobs[jid2]; j.State != "complete" || j.Minions["web-1"]["retcode"] != float64(1) || j.Minions["web-1"]["success"] != false {
		t.Fatalf("after jobs.ret: %+v", js.Jobs[jid2])
	}
	b.facts("web-1", map[string]any{"os": "plan9"})
	minions.Minions = nil
	snapshot(t, c.next(), &minions)
	if minions.Minions["web-1"].Grains["os"] != "plan9" {
		t.Fatalf("minions after new facts: %+v", minions.Minions)
	}
}

// snapshot checks Salt's framing (JSON then two newlines) and decodes the frame.
func snapshot(t *testing.T, msg string, v any) {
	t.Helper()
	body, ok := strings.CutSuffix(msg, "\n\n")
	if !ok || strings.HasSuffix(body, "\n") {
		t.Fatalf("frame %q does not end with exactly two newlines", msg)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("frame %q: %v", msg, err)
	}
}

func TestFormattedEventsReplaysFactsMissingFromTheStore(t *testing.T) {
	b := newBus(t)
	// Facts published but never stored (an edge whose state store lacks them).
	b.publish("agents", "facts", "web-9", map[string]any{"os": "freebsd"})
	e := b.startEdge()
	c := e.dial("/formatted_events/" + b.token("*.*.*"))
	c.send(salt.ReadyMessage)
	var minions struct {
		Minions map[string]struct {
			Grains map[string]any `json:"grains"`
		} `json:"minions"`
	}
	snapshot(t, c.next(), &minions)
	if minions.Minions["web-9"].Grains["os"] != "freebsd" {
		t.Fatalf("minions %+v, want web-9 from the replayed facts", minions.Minions)
	}
	var jobs struct {
		Jobs map[string]any `json:"jobs"`
	}
	snapshot(t, c.next(), &jobs)
	if jobs.Jobs == nil || len(jobs.Jobs) != 0 {
		t.Fatalf("jobs %+v, want an empty dict", jobs.Jobs)
	}
}

// TestAllEventsResume: all_events frames carry _position; ?since= replays what came after it,
// then herald/resume/done, then live events.
func TestAllEventsResume(t *testing.T) {
	b := newBus(t)
	e := b.startEdge()
	tok := b.token("profiles.*.*")
	a := e.dial("/all_events/" + tok)
	a.send(salt.ReadyMessage)
	a.barrier()
	b.publish("profiles", "save", "p0", map[string]any{"Name": "p0"})
	first := a.nextTagged()
	pos, _ := first.Data["_position"].(string)
	if pos == "" {
		t.Fatalf("frame %+v has no _position", first)
	}
	b.publish("profiles", "save", "p1", map[string]any{"Name": "p1"})
	b.publish("profiles", "save", "p2", map[string]any{"Name": "p2"})
	c := e.dial("/all_events/" + tok + "?since=" + url.QueryEscape(pos))
	c.send(salt.ReadyMessage)
	for _, want := range []string{"herald/profiles/save/p1", "herald/profiles/save/p2", "herald/resume/done"} {
		if f := c.nextTagged(); f.Tag != want {
			t.Fatalf("got %+v, want %s", f, want)
		}
	}
}

// TestAllEventsResumeTooOld: a position from another stream gets herald/resume/error with 410,
// then live events.
func TestAllEventsResumeTooOld(t *testing.T) {
	b := newBus(t)
	e := b.startEdge()
	c := e.dial("/all_events/" + b.token("profiles.*.*") + "?since=zzzz:1")
	c.send(salt.ReadyMessage)
	if f := c.nextTagged(); f.Tag != "herald/resume/error" || f.Data["code"] != float64(410) {
		t.Fatalf("got %+v, want herald/resume/error 410", f)
	}
	b.publish("profiles", "save", "live", map[string]any{"Name": "live"})
	if f := c.nextTagged(); f.Tag != "herald/profiles/save/live" {
		t.Fatalf("after too old: got %+v, want live events", f)
	}
}
