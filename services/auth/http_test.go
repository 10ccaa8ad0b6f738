package auth_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/services/auth"
)

// startHTTP serves s's routes on 127.0.0.1 with a port of its own.
func startHTTP(t *testing.T, s *auth.Service) string {
	t.Helper()
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func post(t *testing.T, u, contentType, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(u, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestHTTPLoginJSON(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{})
	base := startHTTP(t, s)

	resp, body := post(t, base+"/api/v1/auth/login", "application/json", `{"username":"admin","password":"`+adminPW+`"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if got, want := keys(m), []string{"expires_at", "permissions", "token", "token_type", "user"}; !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if m["token_type"] != "Bearer" || m["user"] != "admin" || !reflect.DeepEqual(m["permissions"], []any{"*.*.*"}) {
		t.Fatalf("body %s", body)
	}
	exp, err := time.Parse(time.RFC3339, m["expires_at"].(string))
	if err != nil {
		t.Fatalf("expires_at not RFC 3339: %v", err)
	}
	c, err := s.Verifier().Verify(t.Context(), m["token"].(string))
	if err != nil || !c.ExpiresAt.Equal(exp) || c.Subject != "admin" {
		t.Fatalf("token claims %+v, %v; expires_at %s", c, err, exp)
	}

	for _, tc := range []struct {
		name, body string
		status     int
		errText    string
	}{
		{"wrong password", `{"username":"admin","password":"nope"}`, 401, "invalid username or password"},
		{"unknown user", `{"username":"ghost","password":"nope"}`, 401, "invalid username or password"},
		{"bad json", `{"username":`, 400, "not valid JSON"},
		{"missing password", `{"username":"admin"}`, 400, "password: must not be empty"},
		{"missing username", `{"password":"x"}`, 400, "username: must not be empty"},
		{"not a string", `{"username":1,"password":"x"}`, 400, "username: must be a string"},
		{"too large", `{"username":"` + strings.Repeat("a", 70<<10) + `"}`, 400, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, base+"/api/v1/auth/login", "application/json", tc.body)
			var e map[string]any
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if resp.StatusCode != tc.status || !strings.Contains(e["error"].(string), tc.errText) || len(e) != 1 {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, body, tc.status, tc.errText)
			}
		})
	}
	resp, err = http.Get(base + "/api/v1/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET login: %d", resp.StatusCode)
	}
}

func TestHTTPSaltLogin(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{})
	base := startHTTP(t, s)
	form := url.Values{"username": {"admin"}, "password": {adminPW}, "eauth": {"pam"}}.Encode()
	jsonBody := `{"username":"admin","password":"` + adminPW + `","eauth":"auto"}`

	for _, tc := range []struct{ name, ct, body, eauth string }{
		{"form", "application/x-www-form-urlencoded", form, "pam"},
		{"json", "application/json; charset=utf-8", jsonBody, "auto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, base+"/login", tc.ct, tc.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var m struct {
				Return []map[string]json.RawMessage `json:"return"`
			}
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			if len(m.Return) != 1 {
				t.Fatalf("return has %d elements, want a list of one: %s", len(m.Return), body)
			}
			r := m.Return[0]
			var names []string
			for k := range r {
				names = append(names, k)
			}
			sort.Strings(names)
			if want := []string{"eauth", "expire", "perms", "start", "token", "user"}; !slices.Equal(names, want) {
				t.Fatalf("fields %v, want %v", names, want)
			}
			var tok, user, eauth string
			var perms []string
			var start, expire float64
			for k, v := range map[string]any{"token": &tok, "user": &user, "eauth": &eauth, "perms": &perms, "start": &start, "expire": &expire} {
				if err := json.Unmarshal(r[k], v); err != nil {
					t.Fatalf("%s = %s: %v", k, r[k], err)
				}
			}
			if !strings.Contains(string(r["start"]), ".") || !strings.Contains(string(r["expire"]), ".") {
				t.Errorf("start/expire not floats: %s %s", r["start"], r["expire"])
			}
			if user != "admin" || eauth != tc.eauth || !slices.Equal(perms, []string{".*"}) { // Salt's form of *.*.*
				t.Fatalf("body %s", body)
			}
			c, err := s.Verifier().Verify(t.Context(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if int64(start) != c.IssuedAt.Unix() || int64(expire) != c.ExpiresAt.Unix() {
				t.Fatalf("start %f expire %f vs claims %+v", start, expire, c)
			}
			var cookie *http.Cookie
			for _, ck := range resp.Cookies() {
				if ck.Name == "session_id" {
					cookie = ck
				}
			}
			if cookie == nil || cookie.Value != tok || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode {
				t.Fatalf("session_id cookie %+v", cookie)
			}
		})
	}

	for _, tc := range []struct {
		name, ct, body string
		status         int
		ret            string
	}{
		{"form bad password", "application/x-www-form-urlencoded", url.Values{"username": {"admin"}, "password": {"x"}, "eauth": {"pam"}}.Encode(), 401, "invalid username or password"},
		{"json bad password", "application/json", `{"username":"admin","password":"x","eauth":"pam"}`, 401, "invalid username or password"},
		{"missing eauth", "application/x-www-form-urlencoded", url.Values{"username": {"admin"}, "password": {adminPW}}.Encode(), 400, "missing field: eauth"},
		{"json missing password", "application/json", `{"username":"admin","eauth":"pam"}`, 400, "missing field: password"},
		{"json not an object", "application/json", `["admin"]`, 400, "must be a JSON object"},
		{"json non-string", "application/json", `{"username":1,"password":"x","eauth":"pam"}`, 400, "username: must be a string"},
		{"yaml", "application/x-yaml", "username: admin", 415, "unsupported Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, base+"/login", tc.ct, tc.body)
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			wantStatus := strconv.Itoa(tc.status) + " " + http.StatusText(tc.status)
			if resp.StatusCode != tc.status || m["status"] != wantStatus || !strings.Contains(m["return"].(string), tc.ret) {
				t.Fatalf("got %d %s, want %d %q", resp.StatusCode, body, tc.status, tc.ret)
			}
			if len(resp.Cookies()) != 0 {
				t.Fatal("cookie set on failure")
			}
		})
	}
}

func TestHTTPSaltLoginPage(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{})
	resp, err := http.Get(startHTTP(t, s) + "/login")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Session" {
		t.Fatalf("GET /login: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, map[string]any{"status": "401 Unauthorized", "return": "Please log in"}) {
		t.Fatalf("body %s", body)
	}
}

func TestHTTPLoginLimited(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, auth.Config{AdminPassword: adminPW, LoginMaxFailures: 1}, auth.Deps{})
	base := startHTTP(t, s)
	if resp, _ := post(t, base+"/api/v1/auth/login", "application/json", `{"username":"admin","password":"guess"}`); resp.StatusCode != 401 {
		t.Fatalf("first guess %d", resp.StatusCode)
	}
	resp, body := post(t, base+"/api/v1/auth/login", "application/json", `{"username":"admin","password":"guess"}`)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many failed login attempts") {
		t.Fatalf("second guess: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}
