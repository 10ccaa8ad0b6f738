package main

import (
	"bytes"
	"errors"
	"flag"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"

	"github.com/heraldhq/herald/services/auth"
)

// startAuth serves a real auth service's gRPC API on 127.0.0.1.
func startAuth(t *testing.T) (*auth.Service, string) {
	t.Helper()
	s, err := auth.New(auth.Config{AdminPassword: "pw", BcryptCost: bcrypt.MinCost}, auth.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	s.RegisterGRPC(gs)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s, lis.Addr().String()
}

// keys runs the command and returns stdout and stderr.
func keys(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestCreateListRevoke(t *testing.T) {
	t.Setenv("HERALD_TOKEN", "")
	t.Setenv("HERALD_PASSWORD", "")
	s, addr := startAuth(t)
	login := []string{"-addr", addr, "-user", "admin", "-password", "pw"}

	out, msg, err := keys(t, append(login, "create", "-server", "web-1", "-name", "prod agent")...)
	if err != nil {
		t.Fatalf("create: %v (%s)", err, msg)
	}
	key := strings.TrimSpace(out)
	info, err := s.VerifyAPIKey(t.Context(), key)
	if err != nil || info.ServerID != "web-1" || info.Name != "prod agent" {
		t.Fatalf("printed key %q verifies as %+v, %v", key, info, err)
	}
	if !strings.Contains(msg, "created key "+info.ID) {
		t.Fatalf("stderr %q does not name the key id", msg)
	}

	// The same with a token from the environment.
	sess, err := s.Login(t.Context(), "admin", "pw")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_TOKEN", sess.Token)
	if _, msg, err := keys(t, "-addr", addr, "revoke", info.ID); err != nil {
		t.Fatalf("revoke: %v (%s)", err, msg)
	}
	out, _, err = keys(t, "-addr", addr, "list", "-server", "web-1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "KEY_ID") ||
		!strings.Contains(lines[1], info.ID) || !strings.Contains(lines[1], "prod agent") || !strings.HasSuffix(lines[1], "true") {
		t.Fatalf("list output:\n%s", out)
	}
	if strings.Contains(out, key) {
		t.Fatal("list shows the secret")
	}
}

func TestErrors(t *testing.T) {
	t.Setenv("HERALD_TOKEN", "")
	t.Setenv("HERALD_PASSWORD", "")
	_, addr := startAuth(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-addr", addr}, "usage:"},
		{[]string{"-addr", addr, "-token", "x", "delete", "k"}, "usage:"},
		{[]string{"-addr", addr, "-token", "x", "revoke"}, "usage:"},
		{[]string{"-addr", addr, "list"}, "no credentials"},
		{[]string{"-addr", addr, "-user", "admin", "-password", "wrong", "list"}, "Unauthenticated"},
		{[]string{"-addr", addr, "-token", "not-a-token", "list"}, "Unauthenticated"},
		{[]string{"-addr", addr, "-user", "admin", "-password", "pw", "create"}, "server_id: must not be empty"},
		{[]string{"-addr", addr, "-user", "admin", "-password", "pw", "revoke", "nope"}, "NotFound"},
	} {
		_, _, err := keys(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("herald-keys %v: error %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

func TestHelpListsCommands(t *testing.T) {
	t.Parallel()
	_, help, err := keys(t, "-h")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h = %v", err)
	}
	for _, c := range []string{"create -server ID", "list [-server ID]", "revoke KEY_ID", "-addr"} {
		if !strings.Contains(help, c) {
			t.Errorf("-h does not mention %q:\n%s", c, help)
		}
	}
}
