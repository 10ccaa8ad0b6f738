package authwire_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
)

// startResponder serves the auth subjects with a fake user table (alice/pw)
// and returns a stop function that cancels Serve and waits for it.
func startResponder(t *testing.T, s *server.Server, is *token.Issuer, calls *atomic.Int64) (stop func() error) {
	t.Helper()
	nc := natstest.Connect(t, s)
	r := authwire.Responder{
		PublicKey: is.PublicKey(),
		Login: func(ctx context.Context, req authwire.LoginRequest) authwire.LoginReply {
			if calls != nil {
				calls.Add(1)
			}
			if ctx.Err() != nil {
				return authwire.LoginError(authwire.CodeInternal, "context done")
			}
			switch {
			case req.Username == "boom":
				return authwire.LoginError(authwire.CodeInternal, "internal error")
			case req.Username != "alice" || req.Password != "pw":
				return authwire.LoginError(authwire.CodeUnauthorized, "invalid username or password")
			}
			raw, c, err := is.Issue(req.Username, []string{"profiles.*.*"})
			if err != nil {
				return authwire.LoginError(authwire.CodeInternal, "internal error")
			}
			return authwire.LoginReply{Token: raw, ExpiresAt: c.ExpiresAt, User: c.Subject, Permissions: c.Permissions}
		},
	}
	before := s.NumSubscriptions()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, nc, "") }()
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := s.NumSubscriptions(); got < before+2 {
			return errors.New("responder not subscribed yet")
		}
		return nil
	})
	var stopped bool
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Serve did not return")
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return stop
}

func newIssuer(t *testing.T) *token.Issuer {
	t.Helper()
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return token.NewIssuer(priv, time.Hour)
}

func TestLoginAndKeys(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	is := newIssuer(t)
	startResponder(t, s, is, nil)
	nc := natstest.Connect(t, s)

	pub, err := authwire.FetchPublicKey(t.Context(), nc)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(is.PublicKey()) {
		t.Fatal("FetchPublicKey returned another key")
	}
	raw, err := authwire.Login(t.Context(), nc, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	c, err := token.NewVerifier(pub).Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("token from Login does not verify: %v", err)
	}
	if c.Subject != "alice" || len(c.Permissions) != 1 || c.Permissions[0] != "profiles.*.*" {
		t.Fatalf("claims %+v", c)
	}

	cases := []struct {
		name, user, pw string
		want           error
		text           string
	}{
		{"bad password", "alice", "nope", authwire.ErrUnauthorized, "invalid username or password"},
		{"unknown user", "bob", "pw", authwire.ErrUnauthorized, "invalid username or password"},
		{"empty user", "", "pw", authwire.ErrBadRequest, "username: must not be empty"},
		{"empty password", "alice", "", authwire.ErrBadRequest, "password: must not be empty"},
		{"internal", "boom", "pw", authwire.ErrInternal, "internal error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := authwire.Login(t.Context(), nc, tc.user, tc.pw)
			if !errors.Is(err, tc.want) || raw != "" {
				t.Fatalf("Login = %q, %v; want %v", raw, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
			if errors.Is(err, authwire.ErrUnavailable) {
				t.Errorf("error %v claims auth is unavailable", err)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s)

	// Nobody subscribed: NATS answers "no responders" at once.
	if _, err := authwire.Login(t.Context(), nc, "alice", "pw"); !errors.Is(err, authwire.ErrUnavailable) {
		t.Fatalf("no responders: %v, want ErrUnavailable", err)
	}
	if _, err := authwire.FetchPublicKey(t.Context(), nc); !errors.Is(err, authwire.ErrUnavailable) {
		t.Fatalf("no responders keys: %v, want ErrUnavailable", err)
	}

	// A subscriber that never answers: the context deadline ends the wait.
	silent := natstest.Connect(t, s)
	if _, err := silent.Subscribe(authwire.SubjectLogin, func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := silent.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := authwire.Login(ctx, nc, "alice", "pw")
	if !errors.Is(err, authwire.ErrUnavailable) || errors.Is(err, authwire.ErrUnauthorized) {
		t.Fatalf("silent responder: %v, want ErrUnavailable", err)
	}

	// A closed connection is unavailable too, not a credentials problem.
	closed := natstest.Connect(t, s)
	closed.Close()
	if _, err := authwire.Login(t.Context(), closed, "alice", "pw"); !errors.Is(err, authwire.ErrUnavailable) {
		t.Fatalf("closed conn: %v, want ErrUnavailable", err)
	}
}

func TestServeStopsAndDrains(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	stop := startResponder(t, s, newIssuer(t), nil)
	nc := natstest.Connect(t, s)
	if _, err := authwire.Login(t.Context(), nc, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	// The client's reply inbox is a subscription too; only the two auth
	// subscriptions must go.
	before := s.NumSubscriptions() - 2
	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := s.NumSubscriptions(); got > before {
			return errors.New("auth subscriptions still registered")
		}
		return nil
	})
	if _, err := authwire.Login(t.Context(), nc, "alice", "pw"); !errors.Is(err, authwire.ErrUnavailable) {
		t.Fatalf("after stop: %v, want ErrUnavailable", err)
	}
}

func TestQueueGroupAnswersOnce(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	is := newIssuer(t)
	var calls atomic.Int64
	stop1 := startResponder(t, s, is, &calls)
	stop2 := startResponder(t, s, is, &calls)
	nc := natstest.Connect(t, s)
	const n = 10
	for range n {
		if _, err := authwire.Login(t.Context(), nc, "alice", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	// Stopping drains: every request a responder received has been handled.
	if err := errors.Join(stop1(), stop2()); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != n {
		t.Fatalf("%d login calls for %d requests: queue group not shared", got, n)
	}
}
