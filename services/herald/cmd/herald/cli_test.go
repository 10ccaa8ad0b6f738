package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/services/herald"
)

const adminPassword = "correct horse"

// startStack runs a real all-in-one stack on 127.0.0.1 for the test, and points the CLI's
// configuration at a file of the test's own.
func startStack(t *testing.T) *herald.Stack {
	t.Helper()
	t.Setenv("HERALD_CONFIG", filepath.Join(t.TempDir(), "herald", "config.json"))
	t.Setenv("HERALD_TOKEN", "")
	t.Setenv("HERALD_PASSWORD", "")
	cfg := herald.Config{Listen: app.ListenConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"}}
	cfg.NATS.StoreDir = t.TempDir()
	cfg.Auth.AdminPassword = adminPassword
	cfg.Auth.BcryptCost = bcrypt.MinCost
	s, err := herald.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := contextWithCancel(t)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("stack not ready in 20s")
	}
	return s
}

// herald runs the CLI with the stack's addresses and returns its exit code and output.
func heraldCLI(t *testing.T, s *herald.Stack, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut testutil.Buffer
	code := execute(t.Context(), append([]string{"--edge", "http://" + s.HTTPAddr(), "--grpc", s.GRPCAddr()}, args...),
		strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestLoginContextsAndExitCodes(t *testing.T) {
	s := startStack(t)
	if code, _, msg := heraldCLI(t, s, "", "keys", "list"); code != exitAuth || !strings.Contains(msg, "herald login") {
		t.Fatalf("keys list before login: exit %d, %q; want %d and a hint to log in", code, msg, exitAuth)
	}
	if code, _, _ := heraldCLI(t, s, "wrong\n", "login", "--password-stdin"); code != exitAuth {
		t.Fatalf("login with a wrong password: exit %d, want %d", code, exitAuth)
	}
	code, out, msg := heraldCLI(t, s, adminPassword+"\n", "--context", "dev", "login", "-u", "admin", "--password-stdin", "-o", "json")
	if code != 0 {
		t.Fatalf("login: exit %d: %s", code, msg)
	}
	var res struct {
		Context, User string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Context != "dev" || res.User != "admin" {
		t.Fatalf("login output %q: %+v, %v", out, res, err)
	}
	fi, err := os.Stat(os.Getenv("HERALD_CONFIG"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, %v; want mode 0600", fi, err)
	}
	// The stored token now serves every command, with no credentials on the command line.
	if code, out, msg := heraldCLI(t, s, "", "keys", "list", "-o", "json"); code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("keys list after login: exit %d, %q, %s", code, out, msg)
	}
	code, out, _ = heraldCLI(t, s, "", "context", "list", "-o", "json")
	var ctxs []struct {
		Name     string
		Current  bool
		LoggedIn bool `json:"logged_in"`
	}
	if err := json.Unmarshal([]byte(out), &ctxs); code != 0 || err != nil || len(ctxs) != 1 || ctxs[0].Name != "dev" ||
		!ctxs[0].Current || !ctxs[0].LoggedIn {
		t.Fatalf("context list: exit %d, %q, %v", code, out, err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"context", "use", "nope"}, exitNotFound},
		{[]string{"--context", "nope", "keys", "list"}, exitUsage},
		{[]string{"--token", "not-a-token", "keys", "list"}, exitAuth},
		{[]string{"keys", "revoke", "nope"}, exitNotFound},
		{[]string{"keys", "create"}, exitUsage}, // --server is required
		{[]string{"keys", "list", "-o", "yaml"}, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"publish", "profiles", "save", "--object", "{"}, exitUsage},
		{[]string{"--grpc", "127.0.0.1:1", "--timeout", "2s", "keys", "list"}, exitUnavailable},
	} {
		if code, _, msg := heraldCLI(t, s, "", tc.args...); code != tc.want {
			t.Errorf("herald %v: exit %d (%s), want %d", tc.args, code, strings.TrimSpace(msg), tc.want)
		}
	}
	if code, _, _ := heraldCLI(t, s, "", "logout"); code != 0 {
		t.Fatalf("logout: exit %d", code)
	}
	if code, _, _ := heraldCLI(t, s, "", "keys", "list"); code != exitAuth {
		t.Fatalf("keys list after logout: exit %d, want %d", code, exitAuth)
	}
}

func TestKeysRoundTrip(t *testing.T) {
	s := startStack(t)
	t.Setenv("HERALD_TOKEN", "admin:"+adminPassword)
	code, out, msg := heraldCLI(t, s, "", "keys", "create", "--server", "web-1", "--name", "prod agent")
	if code != 0 || !strings.Contains(msg, "created key ") {
		t.Fatalf("create: exit %d, %q, %s", code, out, msg)
	}
	key := strings.TrimSpace(out)
	info, err := s.Auth().VerifyAPIKey(t.Context(), key)
	if err != nil || info.ServerID != "web-1" || info.Name != "prod agent" {
		t.Fatalf("printed key %q verifies as %+v, %v", key, info, err)
	}
	type row struct {
		KeyID    string `json:"key_id"`
		ServerID string `json:"server_id"`
		Name     string
		Revoked  bool
	}
	list := func() []row {
		code, out, msg := heraldCLI(t, s, "", "keys", "list", "--server", "web-1", "-o", "json")
		var rows []row
		if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
			t.Fatalf("list: exit %d, %q (%s): %v", code, out, msg, err)
		}
		if strings.Contains(out, key) {
			t.Fatal("list shows the secret")
		}
		return rows
	}
	if rows := list(); len(rows) != 1 || rows[0].KeyID != info.ID || rows[0].Name != "prod agent" || rows[0].Revoked {
		t.Fatalf("list before revoke: %+v", rows)
	}
	if code, _, msg := heraldCLI(t, s, "", "keys", "revoke", info.ID); code != 0 {
		t.Fatalf("revoke: exit %d, %s", code, msg)
	}
	if rows := list(); len(rows) != 1 || !rows[0].Revoked {
		t.Fatalf("list after revoke: %+v", rows)
	}
	if _, err := s.Auth().VerifyAPIKey(t.Context(), key); err == nil {
		t.Fatal("a revoked key still verifies")
	}
	// The table has a header and one row per key.
	_, out, _ = heraldCLI(t, s, "", "keys", "list", "--server", "web-1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "KEY_ID") ||
		!strings.HasSuffix(lines[1], "true") {
		t.Fatalf("list table:\n%s", out)
	}
}

func TestWatchReceivesPublishedEvents(t *testing.T) {
	s := startStack(t)
	t.Setenv("HERALD_TOKEN", "admin:"+adminPassword)
	var out, errOut testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- execute(t.Context(), []string{"--edge", "http://" + s.HTTPAddr(), "watch", "profiles.save.*", "--count", "1", "-o", "json"},
			strings.NewReader(""), &out, &errOut)
	}()
	// The watcher registers asynchronously: publish a machines event (outside its pattern),
	// then a profiles one, until the profiles event arrives and the watch exits.
	var ack struct {
		Subject  string
		Sequence uint64
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		if code, o, msg := heraldCLI(t, s, "", "publish", "machines", "create", "m-1"); code != 0 {
			t.Fatalf("publish: exit %d, %s %s", code, o, msg)
		}
		code, pub, msg := heraldCLI(t, s, "", "publish", "profiles", "save", "global", "--object", `{"Name":"global"}`, "-o", "json")
		if err := json.Unmarshal([]byte(pub), &ack); code != 0 || err != nil || ack.Sequence == 0 {
			t.Fatalf("publish: exit %d, %q (%s): %v", code, pub, msg, err)
		}
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("watch: exit %d, %s", code, errOut.String())
			}
			return nil
		case <-time.After(200 * time.Millisecond):
			return fmt.Errorf("watch has printed %q", out.String())
		}
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var ev struct{ Type, Action, Key, Principal string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil || ev.Type != "profiles" || ev.Key != "global" ||
		ev.Principal != "user:admin" || strings.Contains(out.String(), `"machines"`) {
		t.Fatalf("watch printed %q: %+v, %v", out.String(), ev, err)
	}
	// A pattern outside the grammar is refused by the socket: a usage error.
	if code, _, msg := heraldCLI(t, s, "", "watch", "a.b"); code != exitUsage {
		t.Fatalf("watch a.b: exit %d (%s), want %d", code, msg, exitUsage)
	}
}

// TestRunExitsWithTheCommandsCode starts the real agent and runs commands through the CLI.
func TestRunExitsWithTheCommandsCode(t *testing.T) {
	s := startStack(t)
	t.Setenv("HERALD_TOKEN", "admin:"+adminPassword)
	startAgent(t, "ws://"+s.HTTPAddr()+"/api/v1/agents/ws", s.DevAPIKey())
	// Wait until the agent is connected: its metrics socket has a sample.
	code, out, msg := heraldCLI(t, s, "", "metrics", herald.DevServerID, "--count", "1", "-o", "json")
	if code != 0 || !strings.Contains(out, `"type":"metrics"`) {
		t.Fatalf("metrics: exit %d, %q, %s", code, out, msg)
	}
	var res struct {
		ExitCode int    `json:"exit_code"`
		Output   string `json:"output"`
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		code, out, msg := heraldCLI(t, s, "", "run", herald.DevServerID, "-o", "json", "--", "echo", "hi")
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil {
			return fmt.Errorf("run echo hi: exit %d, %q (%s): %v", code, out, msg, err)
		}
		return nil
	})
	if res.Output != "hi\n" || res.ExitCode != 0 {
		t.Fatalf("echo hi: %+v", res)
	}
	code, out, msg = heraldCLI(t, s, "", "run", herald.DevServerID, "--", "echo oops; exit 3")
	if code != 3 || out != "oops\n" || !strings.Contains(msg, "exit 3") {
		t.Fatalf("exit 3: exit %d, %q, %q", code, out, msg)
	}
	if code, _, msg := heraldCLI(t, s, "", "run", "no-such-server", "--", "true"); code != exitUnavailable {
		t.Fatalf("run on an offline server: exit %d (%s), want %d", code, msg, exitUnavailable)
	}
	// Connections: the agent is listed, as JSON that parses.
	code, out, _ = heraldCLI(t, s, "", "connections", "list", "-o", "json")
	var conns []struct {
		Endpoint string
		ServerID string `json:"server_id"`
	}
	if err := json.Unmarshal([]byte(out), &conns); code != 0 || err != nil {
		t.Fatalf("connections list: exit %d, %q: %v", code, out, err)
	}
	found := false
	for _, c := range conns {
		found = found || (c.Endpoint == "agent" && c.ServerID == herald.DevServerID)
	}
	if !found {
		t.Fatalf("connections list shows no agent: %s", out)
	}
}

// startAgent runs the real herald-agent until the test ends.
func startAgent(t *testing.T, url, key string) {
	t.Helper()
	cmd := exec.Command(testutil.GoBuild(t, "../../../agent", "./cmd/herald-agent"), "-url", url, "-interval", "200ms", "-enable-commands")
	cmd.Env = append(os.Environ(), "HERALD_API_KEY="+key)
	var logs testutil.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if err := cmd.Wait(); err != nil && !errors.As(err, new(*exec.ExitError)) {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", logs.String())
		}
	})
}

func contextWithCancel(t *testing.T) (contextT, func()) {
	return context.WithCancel(context.Background())
}

// TestTokenRevoke: herald token revoke revokes the context's own token; the next call with it
// is refused (exit 3), and a user:password is not taken for a token.
func TestTokenRevoke(t *testing.T) {
	s := startStack(t)
	if code, _, msg := heraldCLI(t, s, adminPassword+"\n", "login", "-u", "admin", "--password-stdin"); code != 0 {
		t.Fatalf("login: exit %d: %s", code, msg)
	}
	if code, _, msg := heraldCLI(t, s, "", "keys", "list"); code != 0 {
		t.Fatalf("keys list with the fresh token: exit %d: %s", code, msg)
	}
	if code, _, msg := heraldCLI(t, s, "", "token", "revoke"); code != 0 || !strings.Contains(msg, "revoked") {
		t.Fatalf("token revoke: exit %d: %s", code, msg)
	}
	if code, _, msg := heraldCLI(t, s, "", "keys", "list"); code != exitAuth {
		t.Fatalf("keys list with the revoked token: exit %d (%s), want %d", code, msg, exitAuth)
	}
	if code, _, _ := heraldCLI(t, s, "", "--token", "admin:"+adminPassword, "token", "revoke"); code != exitUsage {
		t.Fatalf("token revoke of a user:password: exit %d, want %d", code, exitUsage)
	}
}
