package token_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldhq/herald/pkg/token"
)

func mustKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	k, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fixedClock(at time.Time) token.Option {
	return token.WithClock(func() time.Time { return at })
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	priv := mustKey(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC)
	is := token.NewIssuer(priv, time.Hour, fixedClock(now))
	raw, issued, err := is.Issue("alice", []string{"profiles.*.*", "machines.create.m1"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(raw, ".") != 2 {
		t.Fatalf("raw token %q is not a compact JWS", raw)
	}
	if issued.ExpiresAt.Sub(issued.IssuedAt) != time.Hour || issued.ID == "" {
		t.Fatalf("issued claims %+v", issued)
	}
	v := token.NewVerifier(is.PublicKey(), fixedClock(now.Add(59*time.Minute)))
	got, err := v.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(got, issued) {
		t.Fatalf("claims differ:\n got %+v\nwant %+v", got, issued)
	}
	want := token.Claims{
		Subject:     "alice",
		Permissions: []string{"profiles.*.*", "machines.create.m1"},
		IssuedAt:    now.Truncate(time.Second),
		ExpiresAt:   now.Truncate(time.Second).Add(time.Hour),
		ID:          issued.ID,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("claims:\n got %+v\nwant %+v", got, want)
	}
}

func TestWireClaims(t *testing.T) {
	t.Parallel()
	is := token.NewIssuer(mustKey(t), time.Minute)
	raw, c, err := is.Issue("bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(raw, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var h map[string]any
	var m map[string]any
	if err := json.Unmarshal(hdr, &h); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if h["alg"] != "EdDSA" {
		t.Errorf("alg = %v", h["alg"])
	}
	for _, k := range []string{"sub", "perms", "iat", "nbf", "exp", "jti", "iss"} {
		if _, ok := m[k]; !ok {
			t.Errorf("claim %q missing in %s", k, body)
		}
	}
	if m["iss"] != "herald" || m["sub"] != "bob" || m["jti"] != c.ID || m["nbf"] != m["iat"] {
		t.Errorf("claims %s", body)
	}
	if p, ok := m["perms"].([]any); !ok || len(p) != 0 {
		t.Errorf("perms = %#v, want empty list", m["perms"])
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	priv := mustKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Now()
	is := token.NewIssuer(priv, time.Hour)
	good, _, err := is.Issue("alice", []string{"*.*.*"})
	if err != nil {
		t.Fatal(err)
	}
	expired, _, _ := token.NewIssuer(priv, time.Hour, fixedClock(now.Add(-2*time.Hour))).Issue("alice", nil)
	future, _, _ := token.NewIssuer(priv, time.Hour, fixedClock(now.Add(time.Hour))).Issue("alice", nil)
	otherKey, _, _ := token.NewIssuer(mustKey(t), time.Hour).Issue("alice", []string{"*.*.*"})
	otherExpired, _, _ := token.NewIssuer(mustKey(t), time.Hour, fixedClock(now.Add(-2*time.Hour))).Issue("alice", nil)

	parts := strings.Split(good, ".")
	forgedBody := base64.RawURLEncoding.EncodeToString([]byte(
		`{"perms":["*.*.*"],"iss":"herald","sub":"mallory","exp":` + jsonTime(now.Add(time.Hour)) + `,"iat":` + jsonTime(now) + `}`))
	tampered := parts[0] + "." + forgedBody + "." + parts[2]
	// Swap one signature character for another valid base64url one: a bit flip could make it
	// invalid base64, which is a malformed token, not a bad signature.
	sig := []byte(parts[2])
	if sig[3] == 'A' {
		sig[3] = 'B'
	} else {
		sig[3] = 'A'
	}
	badSig := parts[0] + "." + parts[1] + "." + string(sig)

	claims := func(m jwt.MapClaims) jwt.MapClaims {
		base := jwt.MapClaims{"iss": "herald", "sub": "mallory", "perms": []string{"*.*.*"},
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for k, v := range m {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		return base
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// Alg confusion: HMAC keyed with the public key, which an attacker knows.
	hs256, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	hs256b64, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte(token.EncodePublicKey(pub)))
	sign := func(m jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims(m)).SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	cases := []struct {
		name string
		raw  string
		want error
		text string
	}{
		{"expired", expired, token.ErrExpired, "token expired at"},
		{"not yet valid", future, token.ErrInvalid, "not valid yet"},
		{"other key", otherKey, token.ErrSignature, "token signature invalid"},
		{"other key and expired", otherExpired, token.ErrSignature, "signature"},
		{"tampered payload", tampered, token.ErrSignature, "signature"},
		{"tampered signature", badSig, token.ErrSignature, "signature"},
		{"alg none", none, token.ErrSignature, "none"},
		{"alg HS256", hs256, token.ErrSignature, "HS256"},
		{"alg HS256 b64 key", hs256b64, token.ErrSignature, "HS256"},
		{"no exp", sign(jwt.MapClaims{"exp": nil}), token.ErrMalformed, "exp"},
		{"no sub", sign(jwt.MapClaims{"sub": nil}), token.ErrMalformed, "sub"},
		{"no iat", sign(jwt.MapClaims{"iat": nil}), token.ErrMalformed, "iat"},
		{"wrong issuer", sign(jwt.MapClaims{"iss": "evil"}), token.ErrInvalid, "issuer"},
		{"perms not a list", sign(jwt.MapClaims{"perms": "*.*.*"}), token.ErrMalformed, "could not JSON decode claims"},
		{"empty", "", token.ErrMalformed, "empty"},
		{"spaces", "   ", token.ErrMalformed, "empty"},
		{"one segment", "abc", token.ErrMalformed, "segments"},
		{"four segments", "a.b.c.d", token.ErrMalformed, "segments"},
		{"bad base64", "!!!.???.***", token.ErrMalformed, "malformed"},
		{"header not json", base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + parts[1] + "." + parts[2], token.ErrMalformed, "malformed"},
		{"user:password", "admin:secret", token.ErrMalformed, "malformed"},
		{"huge", strings.Repeat("a", 20000) + ".b.c", token.ErrMalformed, "longer"},
	}
	v := token.NewVerifier(pub)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := v.Verify(t.Context(), tc.raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %+v, %v; want %v", c, err, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not mention %q", err, tc.text)
			}
			if !reflect.DeepEqual(c, token.Claims{}) {
				t.Errorf("claims leaked on error: %+v", c)
			}
		})
	}
}

func jsonTime(t time.Time) string {
	b, _ := json.Marshal(t.Unix())
	return string(b)
}

func TestLeeway(t *testing.T) {
	t.Parallel()
	priv := mustKey(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	raw, _, err := token.NewIssuer(priv, time.Minute, fixedClock(now)).Issue("a", nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	within := token.NewVerifier(pub, fixedClock(now.Add(time.Minute+4*time.Second)))
	if _, err := within.Verify(t.Context(), raw); err != nil {
		t.Errorf("4s past exp within default leeway: %v", err)
	}
	beyond := token.NewVerifier(pub, fixedClock(now.Add(time.Minute+6*time.Second)))
	if _, err := beyond.Verify(t.Context(), raw); !errors.Is(err, token.ErrExpired) {
		t.Errorf("6s past exp: %v, want ErrExpired", err)
	}
	// A requested leeway above the maximum is clamped to it.
	clamped := token.NewVerifier(pub, token.WithLeeway(time.Hour), fixedClock(now.Add(time.Minute+6*time.Second)))
	if _, err := clamped.Verify(t.Context(), raw); !errors.Is(err, token.ErrExpired) {
		t.Errorf("leeway not clamped: %v", err)
	}
}

func TestPrivateKeyPEM(t *testing.T) {
	t.Parallel()
	priv := mustKey(t)
	path := filepath.Join(t.TempDir(), "signing.pem")
	if err := token.WritePrivateKeyPEM(path, priv); err != nil {
		t.Fatal(err)
	}
	if err := token.WritePrivateKeyPEM(path, mustKey(t)); err == nil {
		t.Error("WritePrivateKeyPEM overwrote an existing key")
	}
	got, err := token.LoadPrivateKeyPEM(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(priv) {
		t.Fatal("loaded key differs")
	}
	if _, err := token.ParsePrivateKeyPEM([]byte("not pem")); err == nil {
		t.Error("ParsePrivateKeyPEM accepted garbage")
	}
	if _, err := token.LoadPrivateKeyPEM(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("LoadPrivateKeyPEM accepted a missing file")
	}
}

func TestPublicKeyEncoding(t *testing.T) {
	t.Parallel()
	pub := mustKey(t).Public().(ed25519.PublicKey)
	s := token.EncodePublicKey(pub)
	got, err := token.ParsePublicKey(s)
	if err != nil || !got.Equal(pub) {
		t.Fatalf("ParsePublicKey(%q) = %x, %v", s, got, err)
	}
	for _, bad := range []string{"", "!!", base64.StdEncoding.EncodeToString(make([]byte, 31))} {
		if _, err := token.ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
}

func FuzzVerify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	is := token.NewIssuer(priv, time.Hour)
	good, _, err := is.Issue("alice", []string{"*.*.*"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, "", "a.b.c", "admin:pw", "eyJhbGciOiJub25lIn0.e30.", good + "x", good[:len(good)/2]} {
		f.Add(s)
	}
	v := token.NewVerifier(is.PublicKey())
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(t.Context(), raw)
		if err == nil {
			if raw != good && strings.TrimSpace(raw) != good {
				// Only a token from our key verifies; the fuzzer cannot forge one.
				if c.Subject == "" {
					t.Fatalf("accepted %q with empty subject", raw)
				}
			}
			return
		}
		if !errors.Is(err, token.ErrMalformed) && !errors.Is(err, token.ErrSignature) &&
			!errors.Is(err, token.ErrExpired) && !errors.Is(err, token.ErrInvalid) {
			t.Fatalf("error %v wraps no sentinel", err)
		}
	})
}
