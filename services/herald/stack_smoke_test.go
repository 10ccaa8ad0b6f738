package herald_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/herald"
)

// startStack runs a stack on 127.0.0.1:0 ports and returns it once ready,
// and a function that stops it and returns Run's error.
func startStack(t *testing.T) (*herald.Stack, func() error) {
	t.Helper()
	cfg := herald.Config{Listen: app.ListenConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"}}
	cfg.NATS.StoreDir = t.TempDir()
	cfg.Auth.AdminPassword = "correct horse"
	cfg.Auth.BcryptCost = bcrypt.MinCost
	return startStackWith(t, cfg)
}

// runStack starts a stack with cfg; it stops when the test ends.
func runStack(t *testing.T, cfg herald.Config) *herald.Stack {
	t.Helper()
	s, _ := startStackWith(t, cfg)
	return s
}

func startStackWith(t *testing.T, cfg herald.Config) (*herald.Stack, func() error) {
	t.Helper()
	s, err := herald.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("stack stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("stack not ready within 30s")
	}
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatal("stack did not stop within 30s")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return s, stop
}

func TestStackServesAndStopsCleanly(t *testing.T) {
	s, stop := startStack(t)
	base := "http://" + s.HTTPAddr()
	if strings.HasSuffix(s.HTTPAddr(), ":0") || strings.HasSuffix(s.GRPCAddr(), ":0") {
		t.Fatalf("addresses not bound: %s %s", s.HTTPAddr(), s.GRPCAddr())
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
	}

	// The edge's WebSocket route is on the shared mux, behind auth.
	resp, err := http.Get(base + "/api/v3/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /api/v3/ws without credentials = %d, want 401", resp.StatusCode)
	}

	// Auth's routes are on the shared mux.
	resp, err = http.Post(base+"/api/v1/auth/login", "application/json",
		strings.NewReader(`{"username":"admin","password":"correct horse"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var login struct{ Token string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &login) != nil || login.Token == "" {
		t.Fatalf("login = %d %s", resp.StatusCode, body)
	}

	// Every gRPC service is on the shared server, with reflection.
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if got := listServices(t, cc); !slices.Contains(got, "herald.v1.EventService") || !slices.Contains(got, "herald.v1.AuthService") {
		t.Fatalf("reflection lists %v, want EventService and AuthService", got)
	}
	if _, err := heraldv1.NewAuthServiceClient(cc).Verify(t.Context(), &heraldv1.VerifyRequest{Token: login.Token}); err != nil {
		t.Fatalf("gRPC Verify of the HTTP token: %v", err)
	}
	pub, err := heraldv1.NewEventServiceClient(cc).Publish(bearer(t.Context(), login.Token), &heraldv1.PublishRequest{
		Event: &heraldv1.Event{Type: "profiles", Action: "save", Key: "global"},
	})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if pub.GetSequence() == 0 {
		t.Fatal("Publish acknowledged without a stream sequence")
	}
	if s.NATSServer() == nil || s.NATSServer().NumClients() == 0 {
		t.Fatal("embedded NATS has no service connections")
	}

	if err := stop(); err != nil {
		t.Fatalf("Run after Ctrl-C = %v, want nil", err)
	}
	for _, addr := range []string{s.HTTPAddr(), s.GRPCAddr()} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still accepts connections after shutdown", addr)
		}
	}
	if s.NATSServer().Running() {
		t.Fatal("embedded NATS still running after shutdown")
	}
}

func TestStackReportsBadConfig(t *testing.T) {
	cfg := herald.Config{Listen: app.ListenConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"}}
	cfg.NATS = natsx.EmbeddedConfig{StoreDir: t.TempDir(), ReadyTimeout: -time.Second}
	if _, err := herald.New(cfg, nil); err == nil {
		t.Fatal("New accepted a negative NATS ready timeout")
	}
}

func listServices(t *testing.T, cc *grpc.ClientConn) []string {
	t.Helper()
	// The stream must end before shutdown: an open call holds GracefulStop.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}

// TestStackWithRedisMakesOneDevKey: with a persistent key store the dev key
// is made by the first start and reused by the next, not added every time.
func TestStackWithRedisMakesOneDevKey(t *testing.T) {
	rs := redistest.Start(t)
	cfg := herald.Config{Listen: app.ListenConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0"}, RedisURL: rs.URL()}
	cfg.Auth.AdminPassword = "correct horse"
	cfg.Auth.BcryptCost = bcrypt.MinCost
	var b bytes.Buffer

	cfg.NATS.StoreDir = t.TempDir()
	first, stop := startStackWith(t, cfg)
	if first.DevAPIKey() == "" {
		t.Fatal("the first start made no dev key")
	}
	if err := stop(); err != nil {
		t.Fatalf("first stop: %v", err)
	}

	cfg.NATS.StoreDir = t.TempDir()
	second, _ := startStackWith(t, cfg)
	if second.DevAPIKey() != "" {
		t.Error("the second start made (and showed) another dev key")
	}
	keys, err := second.Auth().ListAPIKeys(t.Context(), herald.DevServerID)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Revoked {
		t.Fatalf("dev-server keys after two starts = %+v, want the one active key", keys)
	}
	second.Banner(&b)
	if !strings.Contains(b.String(), "kept in Redis from an earlier start") || !strings.Contains(b.String(), keys[0].ID) {
		t.Errorf("banner does not say where the dev key is:\n%s", b.String())
	}
}
