package auth_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/auth"
)

// Two auth instances on one JetStream, then both replaced by new ones (a restart of every
// auth): users, API keys, signing keys and revocations are shared and survive; a rotation on
// one reaches the other and a verifier that only watches the buckets (an edge).
func TestKVSharedAcrossInstancesAndRestarts(t *testing.T) {
	t.Parallel()
	srv := natstest.RunServer(t)
	js := newJetStream(t)
	// Generates and logs the admin password once: the buckets are empty.
	a, logs := newService(t, auth.Config{}, auth.Deps{JetStream: js, NC: natstest.Connect(t, srv)})
	runService(t, a)
	var password string
	for _, r := range logs.records(t) {
		if p, ok := r["password"].(string); ok {
			password = p
		}
	}
	if password == "" {
		t.Fatal("no generated admin password logged")
	}
	k, err := a.CreateAPIKey(t.Context(), "web-1", "")
	if err != nil {
		t.Fatal(err)
	}
	b, blogs := newService(t, auth.Config{}, auth.Deps{JetStream: js})
	runService(t, b)
	if strings.Contains(blogs.String(), "generated password") {
		t.Fatal("second instance made its own admin password")
	}
	sess, err := b.Login(t.Context(), "admin", password)
	if err != nil {
		t.Fatalf("second instance login with the first one's admin password: %v", err)
	}
	if got, err := b.VerifyAPIKey(t.Context(), k.Key); err != nil || got.ID != k.ID {
		t.Fatalf("second instance VerifyAPIKey = %+v, %v", got, err)
	}
	if _, err := a.Verifier().Verify(t.Context(), sess.Token); err != nil {
		t.Fatalf("first instance refuses the second's token: %v", err)
	}

	// An edge: only the buckets.
	edge := authwire.NewTrust(js, nil)
	runTrust(t, edge)
	testutil.Eventually(t, 5*time.Second, func() error {
		_, err := edge.Verifier().Verify(t.Context(), sess.Token)
		return err
	})

	// Rotation on a reaches b (it signs with the new key) and the edge (it verifies both).
	kid, err := a.RotateSigningKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := token.KeyID(b.PublicKey()); got != kid {
			return errors.New("second instance still signs with " + got)
		}
		return nil
	})
	fresh, err := b.Login(t.Context(), "admin", password)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		_, err := edge.Verifier().Verify(t.Context(), fresh.Token)
		return err
	})
	if _, err := edge.Verifier().Verify(t.Context(), sess.Token); err != nil {
		t.Fatalf("token of the previous key refused after one rotation: %v", err)
	}

	// Every auth replaced: the old tokens and key still work, nothing is regenerated.
	c, clogs := newService(t, auth.Config{}, auth.Deps{JetStream: js})
	if strings.Contains(clogs.String(), "generated password") {
		t.Fatal("restarted instance made a new admin password")
	}
	for _, raw := range []string{sess.Token, fresh.Token} {
		if _, err := c.Verifier().Verify(t.Context(), raw); err != nil {
			t.Fatalf("restarted auth refuses a token: %v", err)
		}
	}
	if _, err := c.VerifyAPIKey(t.Context(), k.Key); err != nil {
		t.Fatalf("restarted auth refuses the API key: %v", err)
	}

	// Revocation on c: c and the edge refuse; an edge started afterwards knows it too.
	if err := c.RevokeToken(t.Context(), fresh.Claims.ID, "admin", fresh.Claims.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verifier().Verify(t.Context(), fresh.Token); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("revoking instance: %v, want ErrRevoked", err)
	}
	late := authwire.NewTrust(js, nil)
	runTrust(t, late)
	for name, v := range map[string]*authwire.Trust{"running edge": edge, "edge started later": late} {
		testutil.Eventually(t, 5*time.Second, func() error {
			if _, err := v.Verifier().Verify(t.Context(), fresh.Token); !errors.Is(err, token.ErrRevoked) {
				return errors.New(name + " still accepts the revoked token")
			}
			return nil
		})
	}
	if _, err := late.Verifier().Verify(t.Context(), sess.Token); err != nil {
		t.Fatalf("a token not revoked is refused: %v", err)
	}
}

func TestRevokeUserAndChangePasswordOverGRPC(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{JetStream: newJetStream(t)})
	runService(t, s)
	c := startGRPC(t, s)
	admin := bearer(t.Context(), login(t, c, "admin", adminPW))
	if _, err := c.RotateSigningKey(admin, &heraldv1.RotateSigningKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	old := login(t, c, "admin", adminPW)
	if _, err := c.ChangePassword(bearer(t.Context(), old), &heraldv1.ChangePasswordRequest{User: "admin", NewPassword: "new-pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(t.Context(), &heraldv1.VerifyRequest{Token: old}); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("token from before the password change: %v, want revoked", err)
	}
	if _, err := s.Login(t.Context(), "admin", adminPW); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("old password: %v", err)
	}
	// A login in the same second as the change gets a token that works.
	now := login(t, c, "admin", "new-pw")
	if _, err := c.Verify(t.Context(), &heraldv1.VerifyRequest{Token: now}); err != nil {
		t.Fatalf("token after the change: %v", err)
	}
	if _, err := c.RevokeToken(bearer(t.Context(), now), &heraldv1.RevokeTokenRequest{Token: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(t.Context(), &heraldv1.VerifyRequest{Token: now}); err == nil {
		t.Fatal("revoked token verifies")
	}
}

func runTrust(t *testing.T, tr *authwire.Trust) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tr.Run(t.Context()) // cancelled when the test ends, before cleanups run
	}()
	t.Cleanup(func() { <-done })
}

// An edge (a Trust on the buckets) started before auth ever ran refuses tokens as
// unavailable, and accepts them once auth comes up, without a restart.
func TestVerifierStartedBeforeAuth(t *testing.T) {
	t.Parallel()
	js := newJetStream(t)
	edge := authwire.NewTrust(js, nil)
	runTrust(t, edge)
	other, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	early, _, _ := token.NewIssuer(other, time.Hour).Issue("admin", nil)
	if _, err := edge.Verifier().Verify(t.Context(), early); !errors.Is(err, token.ErrNoKey) {
		t.Fatalf("before auth: %v, want ErrNoKey", err)
	}
	s, _ := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{JetStream: js})
	sess, err := s.Login(t.Context(), "admin", adminPW)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := edge.Verifier().Verify(t.Context(), sess.Token)
		return err
	})
}

// A configured signing-key file is put in place once: a rotation afterwards survives restarts
// of auths that still name the same file (compose and Kubernetes mount one), and a new file is
// put in place the next time an auth starts, the rotated key kept as the previous one.
func TestSigningKeyFileAppliedOnceThenRotated(t *testing.T) {
	t.Parallel()
	js := newJetStream(t)
	keyFile := func(name string) (string, string) {
		priv, err := token.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		if err := token.WritePrivateKeyPEM(path, priv); err != nil {
			t.Fatal(err)
		}
		return path, token.KeyID(priv.Public().(ed25519.PublicKey))
	}
	first, firstKID := keyFile("first.pem")
	cfg := auth.Config{AdminPassword: adminPW, SigningKeyFile: first}
	a, _ := newService(t, cfg, auth.Deps{JetStream: js})
	if got := token.KeyID(a.PublicKey()); got != firstKID {
		t.Fatalf("first start signs with %s, want the file's %s", got, firstKID)
	}
	rotated, err := a.RotateSigningKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newService(t, cfg, auth.Deps{JetStream: js})
	if got := token.KeyID(b.PublicKey()); got != rotated {
		t.Fatalf("restart with the same file signs with %s, want the rotated %s (the file undid the rotation)", got, rotated)
	}
	second, secondKID := keyFile("second.pem")
	cfg.SigningKeyFile = second
	c, _ := newService(t, cfg, auth.Deps{JetStream: js})
	if got := token.KeyID(c.PublicKey()); got != secondKID {
		t.Fatalf("restart with a new file signs with %s, want the new file's %s", got, secondKID)
	}
	// The rotated key is the previous one, so its tokens still verify.
	old, err := b.Login(t.Context(), "admin", adminPW)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verifier().Verify(t.Context(), old.Token); err != nil {
		t.Fatalf("token of the rotated key refused after the new file: %v", err)
	}
}

// A signing entry written before the file's kid was recorded, whose file key was rotated away
// (it is the previous key now), keeps its rotation when auth starts with that file again.
func TestSigningKeyFileRotatedBeforeUpgradeStaysRotated(t *testing.T) {
	t.Parallel()
	js := newJetStream(t)
	file, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "file.pem")
	if err := token.WritePrivateKeyPEM(path, file); err != nil {
		t.Fatal(err)
	}
	// An auth without the file creates the bucket; then the entry the previous version wrote
	// after applying the file and one rotation replaces its key.
	newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{JetStream: js})
	kv, err := js.KeyValue(t.Context(), subject.AuthSigningBucket)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := token.MarshalPrivateKeyPEM(rotated)
	prev, _ := token.MarshalPrivateKeyPEM(file)
	old, _ := json.Marshal(map[string][]byte{"current": cur, "previous": prev})
	if _, err := kv.Put(t.Context(), "signing", old); err != nil {
		t.Fatal(err)
	}
	b, _ := newService(t, auth.Config{AdminPassword: adminPW, SigningKeyFile: path}, auth.Deps{JetStream: js})
	if got, want := token.KeyID(b.PublicKey()), token.KeyID(rotated.Public().(ed25519.PublicKey)); got != want {
		t.Fatalf("signs with %s, want the rotated %s: the upgrade undid a rotation", got, want)
	}
}
