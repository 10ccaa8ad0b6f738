package socket_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
	"github.com/heraldhq/herald/services/edge/socket"
)

// jsonDialect is a whole dialect in the runtime's terms, to show that one needs nothing else:
// a token in the Authorization header or, failing that, a first message {"op":"auth","token":..};
// then {"op":"subscribe","pattern":"type.action.key"} answered {"op":"ok"} or {"op":"error"},
// and every permitted event as its JSON.
type jsonDialect struct{ rt *socket.Runtime }

func (d *jsonDialect) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.rt.Serve(w, r, "json", d) }

func (d *jsonDialect) Accept(r *http.Request) (socket.Handler, *access.Session, error) {
	if r.Header.Get("Authorization") == "" {
		return &jsonConn{d: d}, nil, nil // credentials in the first message
	}
	sess, err := d.rt.Auth.Header(r.Context(), r.Header.Get("Authorization"))
	if err != nil {
		return nil, nil, err
	}
	return &jsonConn{d: d, sess: &sess}, &sess, nil
}

func (d *jsonDialect) Refuse(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusUnauthorized)
}

type jsonConn struct {
	d      *jsonDialect
	sess   *access.Session
	client *hub.Client
}

func (c *jsonConn) Open(s *socket.Socket) (err error) {
	c.client, err = s.Client(rawEvents{})
	return err
}

func (c *jsonConn) Frame(s *socket.Socket, msg []byte) error {
	var m struct{ Op, Pattern, Token string }
	if json.Unmarshal(msg, &m) != nil {
		return wsconn.DisconnectPolicy.WithReason("not JSON")
	}
	switch {
	case m.Op == "auth" && c.sess == nil:
		sess, err := c.d.rt.Auth.Token(context.Background(), m.Token)
		if err != nil {
			return wsconn.DisconnectPolicy.WithReason("bad token")
		}
		c.sess = &sess
		s.Authenticate(sess, "")
	case c.sess == nil:
		return wsconn.DisconnectPolicy.WithReason("authenticate first")
	case m.Op == "resume": // Pattern to replay, Token the position
		subjects, err := subject.ForFilters([]event.Filter{{}})
		if err != nil {
			return err
		}
		s.Hold()
		if err := s.Subscribe(c.client, nil, subjects); err != nil {
			return err
		}
		if err := s.Resume(rawEvents{}, subjects, m.Token, func(socket.Resumed) { s.Send([]byte(`{"op":"resumed"}`)) }); err != nil {
			s.Send([]byte(`{"op":"error"}`))
			s.Release()
		}
	case m.Op == "token":
		if _, err := s.Refresh(m.Token); err != nil {
			s.Send([]byte(`{"op":"error"}`))
			return nil
		}
		s.Send([]byte(`{"op":"ok"}`))
	case m.Op == "subscribe":
		f, err := event.ParseFilter(m.Pattern)
		if err != nil {
			s.Send([]byte(`{"op":"error"}`))
			return nil
		}
		subjects, err := subject.ForFilters(event.Allowed(f, c.sess.Filters))
		if err != nil || len(subjects) == 0 {
			s.Send([]byte(`{"op":"error"}`))
			return nil
		}
		if err := s.Subscribe(c.client, nil, subjects); err != nil {
			return err
		}
		s.Send([]byte(`{"op":"ok"}`))
	}
	return nil
}

// rawEvents sends each event as ingest stored it.
type rawEvents struct{}

func (rawEvents) Encode(m *hub.Message) ([]byte, error) { return m.Data, nil }

type rig struct {
	t       *testing.T
	nc      *nats.Conn
	srv     *httptest.Server
	issuer  *token.Issuer
	tracker *registry.Tracker
	hub     *hub.Hub
}

func newRig(t *testing.T, ttl time.Duration) *rig {
	t.Helper()
	ns := natstest.RunServer(t)
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	issuer := token.NewIssuer(priv, ttl)
	nc := natstest.Connect(t, ns)
	natstest.EventStream(t, nc)
	h := hub.New(nc, hub.Config{}, nil)
	tracker, err := registry.NewTracker(registry.NewMemory(), registry.TrackerConfig{Instance: "edge-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hubDone, trackDone := make(chan error, 1), make(chan error, 1)
	go func() { hubDone <- h.Run(ctx) }()
	go func() { trackDone <- tracker.Run(ctx) }()
	rt := &socket.Runtime{Hub: h, Auth: access.New(token.NewVerifier(issuer.PublicKey()), nil),
		Upgrader: wsconn.NewUpgrader(wsconn.Config{}, nil), Tracker: tracker, AuthTimeout: 300 * time.Millisecond}
	srv := httptest.NewServer(&jsonDialect{rt: rt})
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := h.Shutdown(sctx, wsconn.DisconnectShutdown); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		cancel()
		<-hubDone
		<-trackDone
		srv.Close()
	})
	return &rig{t: t, nc: natstest.Connect(t, ns), srv: srv, issuer: issuer, tracker: tracker, hub: h}
}

func (r *rig) token(perms ...string) string {
	raw, _ := r.tokenFor("alice", perms...)
	return raw
}

func (r *rig) tokenFor(user string, perms ...string) (string, time.Time) {
	raw, c, err := r.issuer.Issue(user, perms)
	if err != nil {
		r.t.Fatal(err)
	}
	return raw, c.ExpiresAt
}

// client is a real gorilla client whose frames one goroutine reads into a channel.
type client struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan string
	closed chan *websocket.CloseError
}

func (r *rig) dial(hdr http.Header) *client {
	r.t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(r.srv.URL, "http"), hdr)
	if err != nil {
		r.t.Fatal(err)
	}
	c := &client{t: r.t, ws: ws, frames: make(chan string, 256), closed: make(chan *websocket.CloseError, 1)}
	r.t.Cleanup(func() { _ = ws.Close() })
	go func() {
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) {
					ce = &websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: err.Error()}
				}
				c.closed <- ce
				return
			}
			c.frames <- string(msg)
		}
	}()
	return c
}

func (c *client) send(v string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) next() string {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case ce := <-c.closed:
		c.t.Fatalf("closed %d %q while waiting for a frame", ce.Code, ce.Text)
	case <-time.After(5 * time.Second):
		c.t.Fatal("no frame within 5s")
	}
	return ""
}

func (c *client) expectClose(code int, reason string) {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-c.frames:
		case ce := <-c.closed:
			if ce.Code != code || !strings.Contains(ce.Text, reason) {
				c.t.Fatalf("closed %d %q, want %d %q", ce.Code, ce.Text, code, reason)
			}
			return
		case <-deadline:
			c.t.Fatalf("not closed within 5s, want %d %q", code, reason)
		}
	}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func (r *rig) publish(ev event.Event) {
	r.t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.Publish(subject.ForEvent(&ev), b); err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// TestDialectInOneFile: the dialect above subscribes and receives, refuses bad patterns with its
// own frame, and its connection is listed with its endpoint while open and gone after.
func TestDialectInOneFile(t *testing.T) {
	r := newRig(t, time.Hour)
	c := r.dial(bearer(r.token("profiles.*.*")))
	c.send(`{"op":"subscribe","pattern":"profiles.*.*"}`)
	if f := c.next(); f != `{"op":"ok"}` {
		t.Fatalf("subscribe answered %s", f)
	}
	c.send(`{"op":"subscribe","pattern":"machines.*.*"}`) // outside the permissions
	if f := c.next(); f != `{"op":"error"}` {
		t.Fatalf("forbidden subscribe answered %s", f)
	}
	r.publish(event.Event{Scope: event.ScopeGlobal, Type: "machines", Action: "save", Key: "m1"})
	r.publish(event.Event{Scope: event.ScopeGlobal, Type: "profiles", Action: "save", Key: "global"})
	var got event.Event
	if err := json.Unmarshal([]byte(c.next()), &got); err != nil || got.Type != "profiles" || got.Key != "global" {
		t.Fatalf("got %+v (%v), want the profiles event and never the machines one", got, err)
	}
	held := r.tracker.Held()
	if len(held) != 1 || held[0].Endpoint != "json" || held[0].Principal != "user:alice" || !held[0].Websocket {
		t.Fatalf("registry holds %+v, want one json socket of user:alice", held)
	}
	_ = c.ws.Close()
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := len(r.tracker.Held()); n != 0 {
			return errors.New("connection still listed")
		}
		if n := r.hub.Clients(); n != 0 {
			return errors.New("hub client not removed")
		}
		return nil
	})
}

// TestKickClosesWith4003: a kick through the registry closes the socket with the named code.
func TestKickClosesWith4003(t *testing.T) {
	r := newRig(t, time.Hour)
	c := r.dial(bearer(r.token("*.*.*")))
	c.send(`{"op":"subscribe","pattern":"*.*.*"}`)
	c.next()
	held := r.tracker.Held()
	if len(held) != 1 || !r.tracker.Kick(held[0].ID, registry.KickReason("user:admin")) {
		t.Fatalf("cannot kick %+v", held)
	}
	c.expectClose(wsconn.DisconnectKicked.Code, "kicked by user:admin")
}

// TestFirstMessageAuth: without a header the credentials must come first and in time; a frame
// the handler rejects closes with the Disconnect it returned.
func TestFirstMessageAuth(t *testing.T) {
	r := newRig(t, time.Hour)
	late := r.dial(nil)
	late.expectClose(socket.DisconnectAuthTimeout.Code, socket.DisconnectAuthTimeout.Reason)

	rude := r.dial(nil)
	rude.send(`{"op":"subscribe","pattern":"*.*.*"}`)
	rude.expectClose(wsconn.DisconnectPolicy.Code, "authenticate first")

	good := r.dial(nil)
	good.send(`{"op":"auth","token":"` + r.token("*.*.*") + `"}`)
	good.send(`{"op":"subscribe","pattern":"*.*.*"}`)
	if f := good.next(); f != `{"op":"ok"}` {
		t.Fatalf("subscribe after first-message auth answered %s", f)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if held := r.tracker.Held(); len(held) != 1 || held[0].Principal != "user:alice" {
			return errors.New("the authenticated socket is not listed alone")
		}
		return nil
	})
}

// TestTokenExpiryCloses4001: the runtime watches every session, whichever dialect.
func TestTokenExpiryCloses4001(t *testing.T) {
	r := newRig(t, 2*time.Second)
	c := r.dial(bearer(r.token("*.*.*")))
	c.expectClose(wsconn.DisconnectTokenExpired.Code, "token expired")
}

// TestShutdownCloses1001: the hub's shutdown reaches sockets of any dialect with 1001.
func TestShutdownCloses1001(t *testing.T) {
	r := newRig(t, time.Hour)
	c := r.dial(bearer(r.token("*.*.*")))
	c.send(`{"op":"subscribe","pattern":"*.*.*"}`)
	c.next()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = r.hub.Shutdown(ctx, wsconn.DisconnectShutdown) }()
	c.expectClose(wsconn.DisconnectShutdown.Code, "server shutting down")
}

// TestRefreshOutlivesTheFirstToken: a token sent in-band replaces the session's, so the socket
// stays open past the first token's expiry and closes 4001 at the new one's; a token of another
// user is refused and changes nothing.
func TestRefreshOutlivesTheFirstToken(t *testing.T) {
	r := newRig(t, 2*time.Second)
	first, exp1 := r.tokenFor("alice", "*.*.*")
	c := r.dial(bearer(first))
	other, _ := r.tokenFor("mallory", "*.*.*")
	c.send(`{"op":"token","token":"` + other + `"}`)
	if f := c.next(); f != `{"op":"error"}` {
		t.Fatalf("another user's token answered %s", f)
	}
	// Tokens carry whole seconds: wait (bounded) for one whose expiry is later.
	var next string
	testutil.Eventually(t, 3*time.Second, func() error {
		var exp time.Time
		next, exp = r.tokenFor("alice", "*.*.*")
		if !exp.After(exp1) {
			return errors.New("the clock has not reached the next second yet")
		}
		return nil
	})
	c.send(`{"op":"token","token":"` + next + `"}`)
	if f := c.next(); f != `{"op":"ok"}` {
		t.Fatalf("refresh answered %s", f)
	}
	c.expectClose(wsconn.DisconnectTokenExpired.Code, "token expired")
	if closed := time.Now(); closed.Before(exp1.Add(500 * time.Millisecond)) {
		t.Fatalf("closed at %s, before the refreshed token's expiry (the first expired at %s)", closed, exp1)
	}
}

// TestReplayThatCannotRunCloses1011: a resume whose replay cannot read the stream (this rig's
// runtime has none) says nothing about being caught up: the socket closes 1011 telling the
// client to resume again; a malformed position is refused and the socket stays.
func TestReplayThatCannotRunCloses1011(t *testing.T) {
	r := newRig(t, time.Hour)
	c := r.dial(bearer(r.token("*.*.*")))
	c.send(`{"op":"resume","token":"not a position"}`)
	if f := c.next(); f != `{"op":"error"}` {
		t.Fatalf("malformed position answered %s", f)
	}
	c.send(`{"op":"resume","token":"abc:1"}`)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f := <-c.frames:
			if f == `{"op":"resumed"}` {
				t.Fatal("a replay that could not run said the client was caught up")
			}
		case ce := <-c.closed:
			if ce.Code != socket.DisconnectReplayFailed.Code || !strings.Contains(ce.Text, "reconnect and resume") {
				t.Fatalf("closed %d %q, want %d", ce.Code, ce.Text, socket.DisconnectReplayFailed.Code)
			}
			return
		case <-deadline:
			t.Fatal("not closed within 5s")
		}
	}
}
