package authwire_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
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
		VerifyAPIKey: func(_ context.Context, req authwire.APIKeyRequest) authwire.APIKeyReply {
			switch req.Key {
			case goodKey:
				return authwire.APIKeyReply{KeyID: "k1", ServerID: "web-1", Name: "web one"}
			case "hk_boom":
				return authwire.APIKeyError(authwire.CodeInternal, "internal error")
			}
			return authwire.APIKeyError(authwire.CodeUnauthorized, "invalid or inactive API key")
		},
	}
	before := s.NumSubscriptions()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, nc, "") }()
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := s.NumSubscriptions(); got < before+3 {
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

// goodKey is the one API key the test responder accepts.
const goodKey = "hk_good"

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
	raw, err := authwire.Login(t.Context(), nc, "alice", "pw", "")
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
			raw, err := authwire.Login(t.Context(), nc, tc.user, tc.pw, "")
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
	if _, err := authwire.Login(t.Context(), nc, "alice", "pw", ""); !errors.Is(err, authwire.ErrUnavailable) {
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
	_, err := authwire.Login(ctx, nc, "alice", "pw", "")
	if !errors.Is(err, authwire.ErrUnavailable) || errors.Is(err, authwire.ErrUnauthorized) {
		t.Fatalf("silent responder: %v, want ErrUnavailable", err)
	}

	// A closed connection is unavailable too, not a credentials problem.
	closed := natstest.Connect(t, s)
	closed.Close()
	if _, err := authwire.Login(t.Context(), closed, "alice", "pw", ""); !errors.Is(err, authwire.ErrUnavailable) {
		t.Fatalf("closed conn: %v, want ErrUnavailable", err)
	}
}

func TestServeStopsAndDrains(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	stop := startResponder(t, s, newIssuer(t), nil)
	nc := natstest.Connect(t, s)
	if _, err := authwire.Login(t.Context(), nc, "alice", "pw", ""); err != nil {
		t.Fatal(err)
	}
	// The client's reply inbox is a subscription too; only the three auth
	// subscriptions must go.
	before := s.NumSubscriptions() - 3
	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := s.NumSubscriptions(); got > before {
			return errors.New("auth subscriptions still registered")
		}
		return nil
	})
	if _, err := authwire.Login(t.Context(), nc, "alice", "pw", ""); !errors.Is(err, authwire.ErrUnavailable) {
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
		if _, err := authwire.Login(t.Context(), nc, "alice", "pw", ""); err != nil {
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

func TestVerifyAPIKey(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	startResponder(t, s, newIssuer(t), nil)
	nc := natstest.Connect(t, s)

	info, err := authwire.VerifyAPIKey(t.Context(), nc, goodKey)
	if err != nil {
		t.Fatal(err)
	}
	if info != (authwire.APIKeyInfo{KeyID: "k1", ServerID: "web-1", Name: "web one"}) {
		t.Fatalf("VerifyAPIKey = %+v", info)
	}
	for _, tc := range []struct {
		name, key string
		want      error
	}{
		{"unknown", "hk_unknown", authwire.ErrUnauthorized},
		{"empty", "", authwire.ErrUnauthorized},
		{"internal", "hk_boom", authwire.ErrInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := authwire.VerifyAPIKey(t.Context(), nc, tc.key)
			if !errors.Is(err, tc.want) || info != (authwire.APIKeyInfo{}) {
				t.Fatalf("VerifyAPIKey(%q) = %+v, %v; want %v", tc.key, info, err, tc.want)
			}
			if errors.Is(err, authwire.ErrUnavailable) {
				t.Errorf("error %v claims auth is unavailable", err)
			}
			if tc.key != "" && strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q shows the key", err)
			}
		})
	}

	// A body that is not JSON is refused as malformed.
	msg, err := nc.RequestWithContext(t.Context(), authwire.SubjectAPIKeyVerify, []byte("hk_good"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msg.Data), `"code":"bad_request"`) {
		t.Fatalf("non-JSON request answered %s", msg.Data)
	}
}

func TestVerifyAPIKeyUnavailableAndBadReplies(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s)
	if _, err := authwire.VerifyAPIKey(t.Context(), nc, goodKey); !errors.Is(err, authwire.ErrUnavailable) {
		t.Fatalf("no responders: %v, want ErrUnavailable", err)
	}

	// A responder without VerifyAPIKey does not serve the subject at all.
	is := newIssuer(t)
	resp := natstest.Connect(t, s)
	r := authwire.Responder{PublicKey: is.PublicKey(), Login: func(context.Context, authwire.LoginRequest) authwire.LoginReply {
		return authwire.LoginError(authwire.CodeUnauthorized, "no")
	}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, resp, "") }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		_, err := authwire.Login(t.Context(), nc, "a", "b", "")
		if !errors.Is(err, authwire.ErrUnauthorized) {
			return errors.New("login responder not up yet")
		}
		return nil
	})
	if _, err := authwire.VerifyAPIKey(t.Context(), nc, goodKey); !errors.Is(err, authwire.ErrUnavailable) {
		t.Fatalf("responder without VerifyAPIKey: %v, want ErrUnavailable", err)
	}

	// A reply that names no server is not taken for a valid key.
	odd := natstest.Connect(t, s)
	if _, err := odd.Subscribe(authwire.SubjectAPIKeyVerify, func(m *nats.Msg) { _ = m.Respond([]byte(`{"key_id":"k1"}`)) }); err != nil {
		t.Fatal(err)
	}
	if err := odd.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := authwire.VerifyAPIKey(t.Context(), nc, goodKey); !errors.Is(err, authwire.ErrInternal) {
		t.Fatalf("reply without server id: %v, want ErrInternal", err)
	}
}

// A login request whose caller's deadline has passed when it is picked up is dropped: the
// login function never runs.
func TestResponderDropsAbandonedLogins(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	nc := natstest.Connect(t, srv)
	var calls atomic.Int32
	r := authwire.Responder{PublicKey: mustPub(t), Login: func(context.Context, authwire.LoginRequest) authwire.LoginReply {
		calls.Add(1)
		return authwire.LoginError(authwire.CodeUnauthorized, "no")
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, nc, "") }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, func() error {
		_, err := authwire.Login(t.Context(), nc, "a", "b", "")
		if !errors.Is(err, authwire.ErrUnauthorized) {
			return errors.New("responder not up yet")
		}
		return nil
	})
	before := calls.Load()
	late, _ := json.Marshal(authwire.LoginRequest{Username: "a", Password: "b", Deadline: time.Now().Add(-time.Second)})
	if _, err := nc.Request(authwire.SubjectLogin, late, 300*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("abandoned request answered: %v", err)
	}
	if calls.Load() != before {
		t.Fatal("the login function ran for an abandoned request")
	}
}

func mustPub(t *testing.T) ed25519.PublicKey {
	t.Helper()
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv.Public().(ed25519.PublicKey)
}
