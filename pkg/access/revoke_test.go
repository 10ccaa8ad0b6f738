package access_test

import (
	"errors"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/access"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
)

func TestWatchEndsOnRevocationAndRefresh(t *testing.T) {
	t.Parallel()
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rev := token.NewRevocations()
	ks := token.NewKeySet(token.WithRevocations(rev))
	is := token.NewIssuer(priv, time.Hour)
	ks.SetKeys(is.PublicKey())
	a := access.New(ks, nil)
	raw, c, _ := is.Issue("alice", []string{"*.*.*"})
	sess, err := a.Token(t.Context(), raw)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan wsconn.Disconnect, 1)
	stop := sess.Watch(time.Now(), func(d wsconn.Disconnect) { ended <- d })
	defer stop()

	// Refresh: same principal only.
	other, _, _ := is.Issue("bob", nil)
	if _, err := sess.Refresh(t.Context(), other); !errors.Is(err, access.ErrDenied) {
		t.Fatalf("refresh with another principal's token: %v", err)
	}
	newer, _, _ := is.Issue("alice", []string{"*.*.*"})
	next, err := sess.Refresh(t.Context(), newer)
	if err != nil || next.Claims.Subject != "alice" {
		t.Fatalf("refresh: %+v, %v", next, err)
	}

	rev.RevokeToken(c.ID, "alice", c.ExpiresAt)
	select {
	case d := <-ended:
		if d.Code != 4001 || d.Reason != "token revoked" {
			t.Fatalf("ended with %+v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("revocation did not end the session")
	}
	if _, err := a.Token(t.Context(), raw); !errors.Is(err, access.ErrDenied) {
		t.Fatalf("revoked token: %v", err)
	}
	// The refreshed session, watched anew, is not ended by the old token's revocation.
	stop2 := next.Watch(time.Now(), func(wsconn.Disconnect) { t.Error("refreshed session ended") })
	stop2()
}

func TestNoKeyIsUnavailable(t *testing.T) {
	t.Parallel()
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, _, _ := token.NewIssuer(priv, time.Hour).Issue("alice", nil)
	a := access.New(token.NewKeySet(), nil)
	if _, err := a.Token(t.Context(), raw); !errors.Is(err, access.ErrUnavailable) {
		t.Fatalf("no key yet: %v, want ErrUnavailable (503)", err)
	}
}
