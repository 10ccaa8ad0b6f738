package auth_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/pkg/token"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/auth"
)

// startGRPC serves s's gRPC service on 127.0.0.1 and returns a client.
func startGRPC(t *testing.T, s *auth.Service) heraldv1.AuthServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	s.RegisterGRPC(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.GracefulStop()
		if err := <-done; err != nil {
			t.Errorf("grpc Serve: %v", err)
		}
	})
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return heraldv1.NewAuthServiceClient(cc)
}

func TestGRPCLoginVerify(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "signing.pem")
	key, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := token.WritePrivateKeyPEM(keyFile, key); err != nil {
		t.Fatal(err)
	}
	cfg := auth.Config{AdminPassword: adminPW, SigningKeyFile: keyFile}
	s, _ := newService(t, cfg, auth.Deps{})
	client := startGRPC(t, s)
	ctx := t.Context()

	resp, err := client.Login(ctx, &heraldv1.LoginRequest{Username: "admin", Password: adminPW})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetUser() != "admin" || len(resp.GetPermissions()) != 1 || resp.GetPermissions()[0] != "*.*.*" || resp.GetToken() == "" {
		t.Fatalf("login response %v", resp)
	}
	v, err := client.Verify(ctx, &heraldv1.VerifyRequest{Token: resp.GetToken()})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetUser() != "admin" || v.GetPermissions()[0] != "*.*.*" ||
		!v.GetExpiresAt().AsTime().Equal(resp.GetExpiresAt().AsTime()) ||
		v.GetExpiresAt().AsTime().Sub(v.GetIssuedAt().AsTime()) != auth.DefaultTokenTTL {
		t.Fatalf("verify response %v", v)
	}

	// Tokens that Verify must refuse, each for its own reason.
	priv, _ := token.GenerateKey()
	foreign, _, _ := token.NewIssuer(priv, time.Hour).Issue("admin", []string{"*.*.*"})
	// A replica with the same key whose clock is two hours behind issues a
	// token that is correctly signed but expired.
	behind, _ := newService(t, cfg, auth.Deps{Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	old, err := behind.Login(ctx, "admin", adminPW)
	if err != nil {
		t.Fatal(err)
	}
	oldTok := old.Token

	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"wrong password", func() error {
			_, err := client.Login(ctx, &heraldv1.LoginRequest{Username: "admin", Password: "nope"})
			return err
		}, codes.Unauthenticated, "invalid username or password"},
		{"empty username", func() error {
			_, err := client.Login(ctx, &heraldv1.LoginRequest{Password: "x"})
			return err
		}, codes.InvalidArgument, "username: must not be empty"},
		{"empty password", func() error {
			_, err := client.Login(ctx, &heraldv1.LoginRequest{Username: "admin"})
			return err
		}, codes.InvalidArgument, "password: must not be empty"},
		{"empty token", func() error {
			_, err := client.Verify(ctx, &heraldv1.VerifyRequest{})
			return err
		}, codes.InvalidArgument, "token: must not be empty"},
		{"malformed token", func() error {
			_, err := client.Verify(ctx, &heraldv1.VerifyRequest{Token: "not-a-token"})
			return err
		}, codes.Unauthenticated, "token malformed"},
		{"other key", func() error {
			_, err := client.Verify(ctx, &heraldv1.VerifyRequest{Token: foreign})
			return err
		}, codes.Unauthenticated, "token signature invalid"},
		{"expired", func() error {
			_, err := client.Verify(ctx, &heraldv1.VerifyRequest{Token: oldTok})
			return err
		}, codes.Unauthenticated, "token expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v, want %s %q", err, tc.code, tc.msg)
			}
		})
	}
}
