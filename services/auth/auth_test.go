package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/services/auth"
)

func TestLoginCore(t *testing.T) {
	t.Parallel()
	s, logs := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{})
	sess, err := s.Login(t.Context(), "admin", adminPW)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Verifier().Verify(t.Context(), sess.Token)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "admin" || !slices.Equal(c.Permissions, []string{"*.*.*"}) {
		t.Fatalf("admin claims %+v", c)
	}
	if got := c.ExpiresAt.Sub(c.IssuedAt); got != auth.DefaultTokenTTL {
		t.Fatalf("ttl %s, want %s", got, auth.DefaultTokenTTL)
	}
	if _, err := token.NewVerifier(s.PublicKey()).Verify(t.Context(), sess.Token); err != nil {
		t.Fatalf("PublicKey does not verify tokens: %v", err)
	}
	for _, tc := range []struct {
		user, pw string
		want     error
	}{
		{"admin", "wrong", auth.ErrBadCredentials},
		{"nobody", adminPW, auth.ErrBadCredentials},
		{"admin", strings.Repeat("x", 100), auth.ErrBadCredentials},
		{"", "pw", auth.ErrInvalidRequest},
		{"admin", "", auth.ErrInvalidRequest},
	} {
		if _, err := s.Login(t.Context(), tc.user, tc.pw); !errors.Is(err, tc.want) {
			t.Errorf("Login(%q, %q) = %v, want %v", tc.user, tc.pw, err, tc.want)
		}
	}
	if strings.Contains(logs.String(), adminPW) {
		t.Fatal("a configured password reached the log")
	}
}

func TestGeneratedAdminPassword(t *testing.T) {
	t.Parallel()
	s, logs := newService(t, auth.Config{}, auth.Deps{})
	var passwords []string
	for _, r := range logs.records(t) {
		if pw, ok := r["password"].(string); ok {
			passwords = append(passwords, pw)
			if r["level"] != "WARN" || !strings.Contains(r["msg"].(string), "admin") {
				t.Errorf("password record not clear: %v", r)
			}
		}
	}
	if len(passwords) != 1 {
		t.Fatalf("generated password logged %d times, want once:\n%s", len(passwords), logs)
	}
	if len(passwords[0]) < 20 {
		t.Fatalf("generated password %q too short", passwords[0])
	}
	if _, err := s.Login(t.Context(), "admin", passwords[0]); err != nil {
		t.Fatalf("generated password does not work: %v", err)
	}
}

func TestAdminKeptOrReset(t *testing.T) {
	t.Parallel()
	st := auth.NewMemoryStore()
	hash, _ := bcrypt.GenerateFromPassword([]byte("stored-pw"), bcrypt.MinCost)
	if err := st.PutUser(t.Context(), auth.User{Name: "admin", PasswordHash: hash, Permissions: []string{"*.*.*"}}); err != nil {
		t.Fatal(err)
	}
	// No configured password: the stored admin is kept and nothing is logged.
	s, logs := newService(t, auth.Config{}, auth.Deps{Store: st})
	if _, err := s.Login(t.Context(), "admin", "stored-pw"); err != nil {
		t.Fatalf("stored admin replaced: %v", err)
	}
	if strings.Contains(logs.String(), `"password"`) {
		t.Fatalf("password generated although admin existed:\n%s", logs)
	}
	// A configured password resets it.
	s, _ = newService(t, auth.Config{AdminPassword: "new-pw"}, auth.Deps{Store: st})
	if _, err := s.Login(t.Context(), "admin", "new-pw"); err != nil {
		t.Fatalf("configured password not applied: %v", err)
	}
	if _, err := s.Login(t.Context(), "admin", "stored-pw"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("old password still works: %v", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsersFile(t *testing.T) {
	t.Parallel()
	hash, _ := bcrypt.GenerateFromPassword([]byte("hashed-pw"), bcrypt.MinCost)
	path := writeFile(t, "users.json", `[
		{"name": "viewer", "password": "viewer-pw", "permissions": ["profiles.*.*"]},
		{"name": "ops", "password_hash": "`+string(hash)+`", "permissions": ["machines.create,save.*", "profiles.save.global"]},
		{"name": "none", "password": "none-pw"}
	]`)
	s, logs := newService(t, auth.Config{AdminPassword: adminPW, UsersFile: path}, auth.Deps{})
	for _, tc := range []struct {
		user, pw string
		perms    []string
	}{
		{"viewer", "viewer-pw", []string{"profiles.*.*"}},
		{"ops", "hashed-pw", []string{"machines.create,save.*", "profiles.save.global"}},
		{"none", "none-pw", []string{}},
		{"admin", adminPW, []string{"*.*.*"}},
	} {
		sess, err := s.Login(t.Context(), tc.user, tc.pw)
		if err != nil {
			t.Errorf("Login(%s): %v", tc.user, err)
			continue
		}
		if !slices.Equal(sess.Claims.Permissions, tc.perms) {
			t.Errorf("%s permissions %q, want %q", tc.user, sess.Claims.Permissions, tc.perms)
		}
	}
	if strings.Contains(logs.String(), "viewer-pw") {
		t.Fatal("users file password logged")
	}

	bad := map[string]string{
		"not json":      `{`,
		"both":          `[{"name":"a","password":"p","password_hash":"` + string(hash) + `"}]`,
		"neither":       `[{"name":"a"}]`,
		"no name":       `[{"password":"p"}]`,
		"bad hash":      `[{"name":"a","password_hash":"plain"}]`,
		"bad perm":      `[{"name":"a","password":"p","permissions":["only.two"]}]`,
		"duplicate":     `[{"name":"a","password":"p"},{"name":"a","password":"q"}]`,
		"unknown field": `[{"name":"a","password":"p","role":"x"}]`,
	}
	for name, content := range bad {
		_, err := auth.New(auth.Config{BcryptCost: bcrypt.MinCost, AdminPassword: "x", UsersFile: writeFile(t, "u.json", content)}, auth.Deps{})
		if err == nil {
			t.Errorf("%s: users file accepted", name)
		}
	}
	if _, err := auth.New(auth.Config{UsersFile: filepath.Join(t.TempDir(), "missing.json")}, auth.Deps{}); err == nil {
		t.Error("missing users file accepted")
	}
}

func TestSigningKeyFile(t *testing.T) {
	t.Parallel()
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "signing.pem")
	if err := token.WritePrivateKeyPEM(path, priv); err != nil {
		t.Fatal(err)
	}
	cfg := auth.Config{AdminPassword: adminPW, SigningKeyFile: path, TokenTTL: 5 * time.Minute}
	s1, logs := newService(t, cfg, auth.Deps{})
	s2, _ := newService(t, cfg, auth.Deps{})
	if !s1.PublicKey().Equal(priv.Public()) {
		t.Fatal("signing key file not used")
	}
	if strings.Contains(logs.String(), "generated in memory") {
		t.Fatal("warned about an in-memory key although a file was given")
	}
	// Two replicas with one key accept each other's tokens: what the key file is for.
	sess, err := s1.Login(t.Context(), "admin", adminPW)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s2.Verifier().Verify(t.Context(), sess.Token)
	if err != nil {
		t.Fatalf("replica refused a token: %v", err)
	}
	if c.ExpiresAt.Sub(c.IssuedAt) != 5*time.Minute {
		t.Fatalf("token-ttl not applied: %+v", c)
	}

	_, dev := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{})
	if !strings.Contains(dev.String(), "generated in memory") {
		t.Fatalf("no warning for an in-memory signing key:\n%s", dev)
	}
	if _, err := auth.New(auth.Config{SigningKeyFile: writeFile(t, "bad.pem", "nope")}, auth.Deps{}); err == nil {
		t.Fatal("bad signing key file accepted")
	}
}

func TestLoginLimited(t *testing.T) {
	t.Parallel()
	now := time.Now()
	clock := func() time.Time { return now }
	s, logs := newService(t, auth.Config{AdminPassword: adminPW, LoginMaxFailures: 2}, auth.Deps{Now: clock})
	const stranger, owner = "203.0.113.9", "198.51.100.4"
	for range 2 {
		if _, err := s.LoginFrom(t.Context(), "admin", "guess", stranger); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	// The stranger is slowed down, even with the right password...
	_, err := s.LoginFrom(t.Context(), "admin", adminPW, stranger)
	var limit *auth.LimitError
	if !errors.As(err, &limit) || !errors.Is(err, auth.ErrTooManyAttempts) || limit.RetryAfter != time.Second {
		t.Fatalf("third attempt: %v, want LimitError(1s)", err)
	}
	// ...but the user's own right password from their address still works.
	if _, err := s.LoginFrom(t.Context(), "admin", adminPW, owner); err != nil {
		t.Fatalf("owner locked out by a stranger: %v", err)
	}
	// The backoff ends; then each further failure doubles it.
	now = now.Add(time.Second)
	if _, err := s.LoginFrom(t.Context(), "admin", "guess", stranger); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("after the backoff: %v", err)
	}
	if _, err := s.LoginFrom(t.Context(), "admin", "guess", stranger); !errors.As(err, &limit) || limit.RetryAfter != 2*time.Second {
		t.Fatalf("after another failure: %v, want LimitError(2s)", err)
	}
	if st := s.LoginLimits(); st.RefusedUserAddress != 2 || st.RefusedAddress != 0 {
		t.Fatalf("LoginLimits = %+v", st)
	}
	if !strings.Contains(logs.String(), `"msg":"login refused: too many failures"`) || !strings.Contains(logs.String(), stranger) {
		t.Fatalf("refusal not logged with the address:\n%s", logs)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]auth.Config{
		"negative ttl":  {TokenTTL: -time.Second},
		"cost too low":  {BcryptCost: 1},
		"cost too high": {BcryptCost: 40},
		"long password": {AdminPassword: strings.Repeat("p", 73)},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, cfg)
		}
		if _, err := auth.New(cfg, auth.Deps{}); err == nil {
			t.Errorf("%s: New accepted", name)
		}
	}
	if err := (auth.Config{}).Validate(); err != nil {
		t.Errorf("zero Config invalid: %v", err)
	}
}

// A login whose caller has already given up costs no password check and counts no failure.
func TestLoginDroppedWhenCallerGaveUp(t *testing.T) {
	t.Parallel()
	s, logs := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.LoginFrom(ctx, "admin", "guess", "192.0.2.1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned login: %v, want context.Canceled", err)
	}
	if strings.Contains(logs.String(), "login failed") {
		t.Fatalf("an abandoned login was checked:\n%s", logs)
	}
}
