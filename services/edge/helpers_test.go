package edge_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge"
)

// rig is one edge on a real embedded NATS server, served over real HTTP on 127.0.0.1.
type rig struct {
	t      testing.TB
	ns     *server.Server
	nc     *nats.Conn // the publisher's connection
	edge   *edge.Edge
	srv    *httptest.Server
	issuer *token.Issuer
	priv   ed25519.PrivateKey
	stop   func() error // stops the edge (idempotent), returning Run's error
}

func (r *rig) issuerKey() ed25519.PrivateKey { return r.priv }

type rigOption func(*edge.Config, *edge.Deps)

func newRig(t testing.TB, opts ...rigOption) *rig {
	t.Helper()
	ns := natstest.RunServer(t)
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, ns)
	natstest.EventStream(t, nc)
	natstest.TelemetryStream(t, nc)
	return newRigOn(t, ns, priv, opts...)
}

// newRigOn is one edge on ns, whose streams the caller created, with tokens signed by priv
// (edges sharing a key take each other's tokens).
func newRigOn(t testing.TB, ns *server.Server, priv ed25519.PrivateKey, opts ...rigOption) *rig {
	t.Helper()
	issuer := token.NewIssuer(priv, time.Hour)
	edgeNC := natstest.Connect(t, ns)
	var cfg edge.Config
	deps := edge.Deps{NC: edgeNC, Verifier: token.NewVerifier(issuer.PublicKey())}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	e, err := edge.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	<-e.Ready()
	mux := http.NewServeMux()
	e.Register(mux)
	srv := httptest.NewServer(mux)
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("edge.Run: %v", err)
		}
		srv.Close()
	})
	r := &rig{t: t, ns: ns, nc: natstest.Connect(t, ns), edge: e, srv: srv, issuer: issuer, priv: priv, stop: stop}
	r.serveLogins(priv)
	return r
}

// serveLogins answers password logins over NATS the way the auth service does: the edge's
// user:password path goes through the real authwire contract. The users: admin/secret with
// everything, and viewer/viewer limited to machines.
func (r *rig) serveLogins(priv ed25519.PrivateKey) {
	users := map[string]struct {
		pw    string
		perms []string
	}{"admin": {"secret", []string{"*.*.*"}}, "viewer": {"viewer", []string{"machines.*.*"}}}
	ctx, cancel := context.WithCancel(context.Background())
	resp := authwire.Responder{
		PublicKey: priv.Public().(ed25519.PublicKey),
		Login: func(_ context.Context, req authwire.LoginRequest) authwire.LoginReply {
			u, ok := users[req.Username]
			if !ok || u.pw != req.Password {
				return authwire.LoginError(authwire.CodeUnauthorized, "bad user name or password")
			}
			raw, c, err := r.issuer.Issue(req.Username, u.perms)
			if err != nil {
				return authwire.LoginError(authwire.CodeInternal, err.Error())
			}
			return authwire.LoginReply{Token: raw, ExpiresAt: c.ExpiresAt, User: c.Subject, Permissions: c.Permissions}
		},
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = resp.Serve(ctx, r.nc, authwire.QueueGroup) }()
	r.t.Cleanup(func() { cancel(); <-done })
	natstestWaitForInterest(r.t, r.ns, authwire.SubjectLogin)
}

func natstestWaitForInterest(t testing.TB, ns *server.Server, subj string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if !ns.GlobalAccount().SubscriptionInterest(subj) {
			return fmt.Errorf("no interest in %s", subj)
		}
		return nil
	})
}

func (r *rig) token(perms ...string) string {
	raw, _, err := r.issuer.Issue("alice", perms)
	if err != nil {
		r.t.Fatal(err)
	}
	return raw
}

func (r *rig) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(r.srv.URL, "http") + "/api/v3/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// dial opens a DRP socket with ?token=.
func (r *rig) dial(tok string) *client {
	return r.dialURL(r.wsURL("token="+url.QueryEscape(tok)), nil)
}

func (r *rig) dialURL(u string, hdr http.Header) *client {
	r.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(u, hdr)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		r.t.Fatalf("dial %s: %v (HTTP %d)", u, err, status)
	}
	r.t.Cleanup(func() { ws.Close() })
	return &client{t: r.t, ws: ws}
}

// dialStatus dials expecting refusal, returning the HTTP status and the DRP error body.
func (r *rig) dialStatus(u string, hdr http.Header) (int, string) {
	r.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(u, hdr)
	if err == nil {
		ws.Close()
		r.t.Fatalf("dial %s succeeded, want refusal", u)
	}
	if resp == nil {
		r.t.Fatalf("dial %s: %v (no HTTP response)", u, err)
	}
	var body struct{ Messages []string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, strings.Join(body.Messages, "; ")
}

// publish puts an event on NATS exactly as the ingest service does.
func (r *rig) publish(typ, action, key string, obj any) {
	r.t.Helper()
	b, _ := json.Marshal(obj)
	ev := event.Event{Type: typ, Action: action, Key: key, Principal: "user:test", Object: b}
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
	t  testing.TB
	ws *websocket.Conn
}

// frame is a DRP event as received, with the raw keys kept to check field names.
type frame struct {
	Time      time.Time
	Type      string
	Action    string
	Key       string
	Principal string
	Object    json.RawMessage
	Original  json.RawMessage
	keys      map[string]json.RawMessage
}

func (c *client) send(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) next() frame {
	c.t.Helper()
	f, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

func (c *client) read(wait time.Duration) (frame, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	_, msg, err := c.ws.ReadMessage()
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(msg, &f); err != nil {
		return frame{}, fmt.Errorf("frame %q: %w", msg, err)
	}
	if err := json.Unmarshal(msg, &f.keys); err != nil {
		return frame{}, err
	}
	return f, nil
}

// register sends a command and checks its acknowledgement.
func (c *client) register(verb, pattern string) {
	c.t.Helper()
	c.send(verb + " " + pattern)
	f := c.next()
	if f.Type != "websocket" || f.Action != verb || f.Key != pattern {
		c.t.Fatalf("%s %s: got %+v, want a websocket %s ack", verb, pattern, f, verb)
	}
}

// closeCode reads until the connection ends and returns the close code and reason.
func (c *client) closeCode(wait time.Duration) (int, string) {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
		_ = c.ws.SetReadDeadline(deadline)
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

func basic(user, pw string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))}}
}

func withWS(f func(*wsconn.Config)) rigOption {
	return func(c *edge.Config, _ *edge.Deps) { f(&c.WS) }
}
