package app_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/testutil"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHTTPServerGracefulShutdown(t *testing.T) {
	t.Parallel()
	inHandler := make(chan struct{})
	finish := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		close(inHandler)
		<-finish
		io.WriteString(w, "done")
	})
	s := &app.HTTPServer{Addr: "127.0.0.1:0", Handler: mux, Log: discard()}
	if s.BoundAddr() != "" {
		t.Fatalf("BoundAddr before Run = %q", s.BoundAddr())
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	<-s.Ready()
	addr := s.BoundAddr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("BoundAddr = %q, want 127.0.0.1 with a real port", addr)
	}

	body := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			body <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body <- string(b)
	}()
	<-inHandler
	cancel() // shutdown starts while the request is in flight
	close(finish)
	if got := <-body; got != "done" {
		t.Fatalf("in-flight request got %q, want done", got)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("listener still open after Run returned")
	}
}

func TestHTTPServerListenError(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &app.HTTPServer{Addr: l.Addr().String(), Handler: http.NewServeMux(), Log: discard()}
	if err := s.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run on a taken port = %v, want a listen error", err)
	}
}

func TestGRPCServerStops(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		openCall bool // a never-ending stream forces the Stop fallback
	}{{"graceful", false}, {"forced", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gs := grpc.NewServer()
			healthpb.RegisterHealthServer(gs, health.NewServer())
			s := &app.GRPCServer{Addr: "127.0.0.1:0", Server: gs, Log: discard(), StopTimeout: 100 * time.Millisecond}
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() { errc <- s.Run(ctx) }()
			<-s.Ready()
			cc, err := grpc.NewClient(s.BoundAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			client := healthpb.NewHealthClient(cc)
			resp, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("status %v", resp.Status)
			}
			if tc.openCall {
				stream, err := client.Watch(t.Context(), &healthpb.HealthCheckRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := stream.Recv(); err != nil { // the call is now open on the server
					t.Fatal(err)
				}
			}
			cancel()
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not return")
			}
			if tc.openCall {
				if err == nil || !strings.Contains(err.Error(), "graceful stop exceeded") {
					t.Fatalf("Run = %v, want the forced-stop error", err)
				}
			} else if err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	h := &app.Health{}
	var down atomic.Bool
	h.AddCheck("nats", func(context.Context) error {
		if down.Load() {
			return errors.New("disconnected")
		}
		return nil
	})
	mux := http.NewServeMux()
	h.Register(mux)
	srv := &app.HTTPServer{Addr: "127.0.0.1:0", Handler: mux, Log: discard()}
	sctx, scancel := context.WithCancel(t.Context())
	defer scancel()
	go srv.Run(sctx)
	<-srv.Ready()
	base := "http://" + srv.BoundAddr()

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Fatalf("/readyz before Run = %d %q", code, body)
	}
	hctx, hcancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.Run(hctx) }()
	testutil.Eventually(t, 10*time.Second, func() error { return h.Check(t.Context()) })
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz when ready = %d %q", code, body)
	}
	down.Store(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nats: disconnected") {
		t.Fatalf("/readyz with a failing check = %d %q", code, body)
	}
	down.Store(false)
	hcancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("/readyz when stopping = %d %q", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz when stopping = %d", code)
	}
}

func TestHealthDegradedStaysReady(t *testing.T) {
	h := &app.Health{}
	h.SetReady(true)
	h.AddDegradedCheck("registry", func(context.Context) error { return errors.New("redis down") })
	mux := http.NewServeMux()
	h.Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "degraded: registry: redis down") {
		t.Fatalf("readyz = %d %q, want 200 saying degraded", rec.Code, rec.Body.String())
	}
}
