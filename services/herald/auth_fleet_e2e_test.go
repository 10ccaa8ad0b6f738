package herald_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/services/auth"
	"github.com/heraldhq/herald/services/edge"
)

// trustEdge starts an edge process's worth of parts on ns: its own NATS connection, an
// authwire.Trust watching auth's buckets (as herald-edge does), the edge, and its HTTP server.
// wsConnOnEdge is a socket and the edge it is open on.
type wsConnOnEdge struct {
	edge string
	ws   *websocket.Conn
}

func trustEdge(t *testing.T, ns *server.Server) string {
	t.Helper()
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	trust := authwire.NewTrust(js, nil)
	e, err := edge.New(edge.Config{}, edge.Deps{NC: nc, Verifier: trust.Verifier()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.Register(mux)
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = trust.Run(ctx); done <- struct{}{} }()
	go func() { _ = e.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		srv.Close()
	})
	<-e.Ready()
	return strings.TrimPrefix(srv.URL, "http://")
}

// Two edges that only watch auth's buckets: a rotated key reaches both; revoking a user closes
// that user's sockets on both, token and password ones, with 4001 within 1s; an edge started
// after the revocation refuses the revoked token.
func TestRevocationAndRotationFleetWide(t *testing.T) {
	ns := natstest.RunServer(t)
	anc := natstest.Connect(t, ns)
	js, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{AdminPassword: "correct horse", BcryptCost: bcrypt.MinCost}, auth.Deps{NC: anc, JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = a.Run(ctx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran })
	edges := []string{trustEdge(t, ns), trustEdge(t, ns)}

	if _, err := a.RotateSigningKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	sess, err := a.Login(t.Context(), "admin", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	var socks []*wsConnOnEdge
	for _, addr := range edges {
		// The rotated key reaches the edge by its watch.
		testutil.Eventually(t, 5*time.Second, func() error {
			ws, code, err := dialDRPFrom(t.Context(), addr, "127.0.0.1", "token="+sess.Token)
			if err != nil {
				return errors.New("token of the rotated key refused: HTTP " + http.StatusText(code))
			}
			socks = append(socks, &wsConnOnEdge{addr, ws})
			return nil
		})
		ws, code, err := dialDRPFrom(t.Context(), addr, "127.0.0.1", "token="+url.QueryEscape("admin:correct horse"))
		if err != nil {
			t.Fatalf("password socket on %s: %v (HTTP %d)", addr, err, code)
		}
		socks = append(socks, &wsConnOnEdge{addr, ws})
	}
	for _, s := range socks {
		t.Cleanup(func() { s.ws.Close() })
		expectAck(t, s.ws, "register", "profiles.*.*")
	}

	revoked := time.Now()
	if err := a.RevokeUser(t.Context(), "admin"); err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		ce, err := closeCode(s.ws, 5*time.Second)
		if err != nil || ce.Code != 4001 || !strings.Contains(ce.Text, "revoked") {
			t.Fatalf("socket on %s: %v %v, want 4001 token revoked", s.edge, ce, err)
		}
	}
	if d := time.Since(revoked); d > time.Second {
		t.Errorf("last socket closed %s after the revocation, want within 1s", d)
	}
	t.Logf("revoking admin closed %d sockets on %d edges within %s", len(socks), len(edges), time.Since(revoked).Round(time.Microsecond))

	late := trustEdge(t, ns)
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, code, _ := dialDRPFrom(t.Context(), late, "127.0.0.1", "token="+sess.Token); code != http.StatusUnauthorized {
			return errors.New("edge started after the revocation: HTTP " + http.StatusText(code) + ", want 401")
		}
		return nil
	})
}
