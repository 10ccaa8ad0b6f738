package auth_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/services/auth"
)

func TestNATSLogin(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	s, _ := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{NC: natstest.Connect(t, srv)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})

	nc := natstest.Connect(t, srv)
	var pub ed25519.PublicKey
	testutil.Eventually(t, 5*time.Second, func() error {
		k, err := authwire.FetchPublicKey(t.Context(), nc)
		pub = k
		return err
	})
	if !s.PublicKey().Equal(pub) {
		t.Fatal("herald.auth.keys returned another key")
	}
	raw, err := authwire.Login(t.Context(), nc, "admin", adminPW, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := token.NewVerifier(pub).Verify(t.Context(), raw)
	if err != nil || c.Subject != "admin" || len(c.Permissions) != 1 || c.Permissions[0] != "*.*.*" {
		t.Fatalf("claims %+v, %v", c, err)
	}
	if _, err := authwire.Login(t.Context(), nc, "admin", "wrong", ""); !errors.Is(err, authwire.ErrUnauthorized) {
		t.Fatalf("wrong password: %v, want ErrUnauthorized", err)
	}
	if _, err := authwire.Login(t.Context(), nc, "", "x", ""); !errors.Is(err, authwire.ErrBadRequest) {
		t.Fatalf("empty user: %v, want ErrBadRequest", err)
	}

	// After Run returns, nobody answers: the subscriptions were drained.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // Let the cleanup's receive succeed.
	if _, err := authwire.Login(t.Context(), nc, "admin", adminPW, ""); !errors.Is(err, authwire.ErrUnavailable) {
		t.Fatalf("after Run: %v, want ErrUnavailable", err)
	}
}

func TestRunWithoutNATS(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatalf("Run without NATS: %v", err)
	}
}
