package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/auth"
)

// usersWithoutKeyRights are users whose permissions fall short of
// apikeys.manage.*: one sees metrics, one may manage only one server's
// keys (still refused: key management needs the wildcard).
const usersWithoutKeyRights = `[
  {"name": "viewer", "password": "viewer-pw", "permissions": ["metrics.read.*"]},
  {"name": "web1ops", "password": "web1-pw", "permissions": ["apikeys.manage.web-1"]}
]`

// bearer returns ctx with the gRPC metadata a caller with tok sends.
func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func login(t *testing.T, c heraldv1.AuthServiceClient, user, pw string) string {
	t.Helper()
	resp, err := c.Login(t.Context(), &heraldv1.LoginRequest{Username: user, Password: pw})
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return resp.GetToken()
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if st, _ := status.FromError(err); st.Code() != code {
		t.Fatalf("got %v, want %s", err, code)
	}
}

func TestGRPCAPIKeysPermissions(t *testing.T) {
	t.Parallel()
	s, _ := newService(t, auth.Config{AdminPassword: adminPW, UsersFile: writeFile(t, "users.json", usersWithoutKeyRights)}, auth.Deps{})
	c := startGRPC(t, s)
	ctx := t.Context()
	viewer := bearer(ctx, login(t, c, "viewer", "viewer-pw"))
	web1ops := bearer(ctx, login(t, c, "web1ops", "web1-pw"))
	admin := bearer(ctx, login(t, c, "admin", adminPW))

	calls := map[string]func(context.Context) error{
		"create": func(ctx context.Context) error {
			_, err := c.CreateAPIKey(ctx, &heraldv1.CreateAPIKeyRequest{ServerId: "web-1"})
			return err
		},
		"list": func(ctx context.Context) error {
			_, err := c.ListAPIKeys(ctx, &heraldv1.ListAPIKeysRequest{})
			return err
		},
		"revoke": func(ctx context.Context) error {
			_, err := c.RevokeAPIKey(ctx, &heraldv1.RevokeAPIKeyRequest{KeyId: "whatever"})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			wantCode(t, call(ctx), codes.Unauthenticated)
			wantCode(t, call(metadata.AppendToOutgoingContext(ctx, "authorization", "Basic YWRtaW46eA==")), codes.Unauthenticated)
			wantCode(t, call(bearer(ctx, "not-a-token")), codes.Unauthenticated)
			wantCode(t, call(viewer), codes.PermissionDenied)
			wantCode(t, call(web1ops), codes.PermissionDenied)
		})
	}
	// Nothing was created by the refused calls.
	list, err := c.ListAPIKeys(admin, &heraldv1.ListAPIKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetKeys()) != 0 {
		t.Fatalf("refused calls left keys: %v", list.GetKeys())
	}
}

func TestGRPCAPIKeysLifecycle(t *testing.T) {
	t.Parallel()
	s, logs := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{})
	c := startGRPC(t, s)
	admin := bearer(t.Context(), login(t, c, "admin", adminPW))

	before := time.Now()
	k1, err := c.CreateAPIKey(admin, &heraldv1.CreateAPIKeyRequest{ServerId: "web-1", Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k1.GetKey(), "hk_") || len(k1.GetKey()) != 46 || k1.GetKeyId() == "" ||
		k1.GetServerId() != "web-1" || k1.GetName() != "first" || k1.GetCreatedAt().AsTime().Before(before.Add(-time.Second)) {
		t.Fatalf("create response %v", k1)
	}
	k2, err := c.CreateAPIKey(admin, &heraldv1.CreateAPIKeyRequest{ServerId: "web-2"})
	if err != nil {
		t.Fatal(err)
	}
	k3, err := c.CreateAPIKey(admin, &heraldv1.CreateAPIKeyRequest{ServerId: "web-1", Name: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if k1.GetKey() == k3.GetKey() || k1.GetKeyId() == k3.GetKeyId() {
		t.Fatal("two creations returned the same key or id")
	}

	all, err := c.ListAPIKeys(admin, &heraldv1.ListAPIKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := protoKeyIDs(all); strings.Join(ids, ",") != strings.Join([]string{k1.GetKeyId(), k2.GetKeyId(), k3.GetKeyId()}, ",") {
		t.Fatalf("list ids %v, want creation order", ids)
	}
	text := prototext.Format(all)
	for _, k := range []string{k1.GetKey(), k2.GetKey(), k3.GetKey()} {
		if strings.Contains(text, k) || strings.Contains(logs.String(), k) {
			t.Fatal("a secret appears in the list response or the logs")
		}
	}
	web1, err := c.ListAPIKeys(admin, &heraldv1.ListAPIKeysRequest{ServerId: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := web1.GetKeys(); len(got) != 2 || got[0].GetName() != "first" || got[1].GetName() != "second" || got[0].GetRevoked() {
		t.Fatalf("list web-1 = %v", got)
	}

	if _, err := c.RevokeAPIKey(admin, &heraldv1.RevokeAPIKeyRequest{KeyId: k1.GetKeyId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RevokeAPIKey(admin, &heraldv1.RevokeAPIKeyRequest{KeyId: k1.GetKeyId()}); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	web1, _ = c.ListAPIKeys(admin, &heraldv1.ListAPIKeysRequest{ServerId: "web-1"})
	if got := web1.GetKeys(); len(got) != 2 || !got[0].GetRevoked() || got[1].GetRevoked() {
		t.Fatalf("after revoke list web-1 = %v", got)
	}
	if _, err := s.VerifyAPIKey(t.Context(), k1.GetKey()); !errors.Is(err, auth.ErrInvalidAPIKey) {
		t.Fatalf("revoked key verifies: %v", err)
	}
	if got, err := s.VerifyAPIKey(t.Context(), k3.GetKey()); err != nil || got.ID != k3.GetKeyId() || got.ServerID != "web-1" {
		t.Fatalf("VerifyAPIKey(k3) = %+v, %v", got, err)
	}
	if !strings.Contains(logs.String(), `"msg":"api key created"`) || !strings.Contains(logs.String(), `"principal":"admin"`) {
		t.Fatalf("no audit log naming the caller: %s", logs)
	}

	_, err = c.RevokeAPIKey(admin, &heraldv1.RevokeAPIKeyRequest{KeyId: "unknown"})
	wantCode(t, err, codes.NotFound)
	_, err = c.RevokeAPIKey(admin, &heraldv1.RevokeAPIKeyRequest{})
	wantCode(t, err, codes.InvalidArgument)
	for _, bad := range []*heraldv1.CreateAPIKeyRequest{
		{}, {ServerId: "web 1"}, {ServerId: strings.Repeat("x", 129)}, {ServerId: "web-1", Name: "a\nb"},
	} {
		_, err := c.CreateAPIKey(admin, bad)
		wantCode(t, err, codes.InvalidArgument)
	}
}

func protoKeyIDs(r *heraldv1.ListAPIKeysResponse) []string {
	var ids []string
	for _, k := range r.GetKeys() {
		ids = append(ids, k.GetKeyId())
	}
	return ids
}

// runService runs s until the test ends, then cancels it and waits for Run
// to return.
func runService(t *testing.T, s *auth.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
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
}

func TestNATSVerifyAPIKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) auth.Store
	}{
		{"memory", func(*testing.T) auth.Store { return auth.NewMemoryStore() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.RunServer(t)
			s, _ := newService(t, auth.Config{AdminPassword: adminPW}, auth.Deps{NC: natstest.Connect(t, srv), Store: tc.store(t)})
			runService(t, s)
			c := startGRPC(t, s)
			admin := bearer(t.Context(), login(t, c, "admin", adminPW))
			k, err := c.CreateAPIKey(admin, &heraldv1.CreateAPIKeyRequest{ServerId: "web-1", Name: "agent"})
			if err != nil {
				t.Fatal(err)
			}

			nc := natstest.Connect(t, srv)
			var info authwire.APIKeyInfo
			testutil.Eventually(t, 5*time.Second, func() error {
				var err error
				info, err = authwire.VerifyAPIKey(t.Context(), nc, k.GetKey())
				return err
			})
			if info != (authwire.APIKeyInfo{KeyID: k.GetKeyId(), ServerID: "web-1", Name: "agent"}) {
				t.Fatalf("VerifyAPIKey = %+v", info)
			}
			for _, bad := range []string{"", "hk_" + strings.Repeat("A", 43), k.GetKey() + "x", strings.Repeat("k", 300)} {
				if _, err := authwire.VerifyAPIKey(t.Context(), nc, bad); !errors.Is(err, authwire.ErrUnauthorized) {
					t.Fatalf("VerifyAPIKey(bad key of %d bytes) = %v, want ErrUnauthorized", len(bad), err)
				}
			}

			announced, err := nc.SubscribeSync(authwire.SubjectAPIKeyRevoked(k.GetKeyId()))
			if err != nil || nc.Flush() != nil {
				t.Fatal(err)
			}
			if _, err := c.RevokeAPIKey(admin, &heraldv1.RevokeAPIKeyRequest{KeyId: k.GetKeyId()}); err != nil {
				t.Fatal(err)
			}
			if _, err := announced.NextMsg(5 * time.Second); err != nil {
				t.Fatalf("revocation not announced on %s: %v", authwire.SubjectAPIKeyRevoked(k.GetKeyId()), err)
			}
			_, err = authwire.VerifyAPIKey(t.Context(), nc, k.GetKey())
			if !errors.Is(err, authwire.ErrUnauthorized) || !strings.Contains(err.Error(), "invalid or inactive API key") {
				t.Fatalf("revoked key: %v, want ErrUnauthorized", err)
			}
		})
	}
}
