package token_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/token"
)

func TestKeySetRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey, stranger := mustKey(t), mustKey(t), mustKey(t)
	oldTok, _, _ := token.NewIssuer(oldKey, time.Hour).Issue("alice", nil)
	newIs := token.NewIssuer(newKey, time.Hour)
	newTok, _, _ := newIs.Issue("alice", nil)

	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(newTok, ".")[0])
	var h map[string]any
	if err := json.Unmarshal(hdr, &h); err != nil || h["kid"] != newIs.KeyID() || newIs.KeyID() != token.KeyID(newIs.PublicKey()) {
		t.Fatalf("header %s, kid %q", hdr, newIs.KeyID())
	}

	ks := token.NewKeySet()
	if _, err := ks.Verify(t.Context(), newTok); !errors.Is(err, token.ErrNoKey) || ks.Known() {
		t.Fatalf("empty set: %v, want ErrNoKey", err)
	}
	ks.SetKeys(oldKey.Public().(ed25519.PublicKey))
	if _, err := ks.Verify(t.Context(), newTok); !errors.Is(err, token.ErrSignature) {
		t.Fatalf("new token before rotation: %v, want ErrSignature", err)
	}
	ks.SetKeys(newKey.Public().(ed25519.PublicKey), oldKey.Public().(ed25519.PublicKey))
	for _, raw := range []string{oldTok, newTok} {
		if _, err := ks.Verify(t.Context(), raw); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
	}
	ks.SetKeys(newKey.Public().(ed25519.PublicKey), stranger.Public().(ed25519.PublicKey))
	if _, err := ks.Verify(t.Context(), oldTok); !errors.Is(err, token.ErrSignature) {
		t.Fatalf("retired key: %v, want ErrSignature", err)
	}
}

func TestRevocations(t *testing.T) {
	t.Parallel()
	priv := mustKey(t)
	now := time.Date(2026, 5, 1, 10, 0, 0, 300_000_000, time.UTC)
	clock := func() time.Time { return now }
	rev := token.NewRevocations(token.WithClock(clock))
	v := token.NewVerifier(priv.Public().(ed25519.PublicKey), token.WithRevocations(rev), token.WithClock(clock))
	is := token.NewIssuer(priv, time.Hour, token.WithClock(clock))
	a1, c1, _ := is.Issue("alice", nil)
	a2, _, _ := is.Issue("alice", nil)
	b1, _, _ := is.Issue("bob", nil)

	changed := make(chan struct{}, 4)
	stop := rev.Watch("alice", func() { changed <- struct{}{} })
	defer stop()
	rev.RevokeToken(c1.ID, "alice", c1.ExpiresAt)
	<-changed
	if _, err := v.Verify(t.Context(), a1); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked jti: %v", err)
	}
	if _, err := v.Verify(t.Context(), a2); err != nil {
		t.Fatalf("other token of alice: %v", err)
	}
	rev.RevokeUser("alice", now)
	<-changed
	if _, err := v.Verify(t.Context(), a2); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoked user: %v", err)
	}
	if _, err := v.Verify(t.Context(), b1); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// A login in the same second as the revocation gets an iat the revocation does not cover.
	a3, c3, _ := is.IssueNotBefore("alice", nil, rev.UserRevokedBefore("alice"))
	if _, err := v.Verify(t.Context(), a3); err != nil {
		t.Fatalf("token issued after the revocation (iat %s): %v", c3.IssuedAt, err)
	}
}

func TestRevocationsWatchEvery(t *testing.T) {
	t.Parallel()
	rev := token.NewRevocations()
	const n = 50
	got := make(chan struct{}, n)
	for range n {
		stop := rev.Watch("alice", func() { got <- struct{}{} })
		defer stop()
	}
	rev.RevokeUser("alice", time.Now())
	for i := range n {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d watchers told", i, n)
		}
	}
}
