package app_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/testutil"
)

// healthPart serves a ping route and gRPC's standard health service.
type healthPart struct{}

func (healthPart) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("pong")) })
}
func (healthPart) RegisterGRPC(s grpc.ServiceRegistrar) {
	healthpb.RegisterHealthServer(s, health.NewServer())
}

func writeCert(t *testing.T, certFile, keyFile string) *app.Certificate {
	t.Helper()
	c, err := app.SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WritePEM(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return c
}

// peerFingerprint connects with TLS and returns the SHA-256 of the certificate the server shows.
func peerFingerprint(addr string, cfg *tls.Config) (string, error) {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:])), nil
}

func plain(fp string) string { return strings.ReplaceAll(fp, ":", "") }

func TestFrontServesTLSFromFilesAndReloadsThem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile)
	front, err := app.NewFront(app.ListenConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0",
		HTTPCert: certFile, HTTPKey: keyFile, TLSPoll: 10 * time.Millisecond}, discard(), healthPart{})
	if err != nil {
		t.Fatal(err)
	}
	if !front.TLS() || !front.GRPCTLS() {
		t.Fatal("the HTTP pair must secure both listeners")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, discard(), front.Runners()...) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-front.HTTP.Ready()
	<-front.GRPC.Ready()
	pool, err := first.CertPool()
	if err != nil {
		t.Fatal(err)
	}

	// HTTPS with the file's certificate, verified against it.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + front.HTTP.BoundAddr() + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET /ping over TLS = %d (tls %v)", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP on the TLS port gets no page.
	if resp, err := http.Get("http://" + front.HTTP.BoundAddr() + "/ping"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served on the TLS listener")
		}
	}
	// TLS 1.1 is refused.
	if _, err := peerFingerprint(front.HTTP.BoundAddr(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}

	// gRPC over TLS with the same certificate.
	cc, err := grpc.NewClient(front.GRPC.BoundAddr(), grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "127.0.0.1")))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if r, err := healthpb.NewHealthClient(cc).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health over TLS = %v, %v", r, err)
	}

	// Replacing the files switches new handshakes to the new certificate, no restart.
	second := writeCert(t, certFile, keyFile)
	insecure := &tls.Config{InsecureSkipVerify: true}
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, addr := range []string{front.HTTP.BoundAddr(), front.GRPC.BoundAddr()} {
			fp, err := peerFingerprint(addr, insecure.Clone())
			if err != nil {
				return err
			}
			if fp != plain(second.Fingerprint()) {
				return fmt.Errorf("%s still shows %s, want %s", addr, fp, plain(second.Fingerprint()))
			}
		}
		return nil
	})
}

func TestFrontSelfSignedDevCertificate(t *testing.T) {
	t.Parallel()
	front, err := app.NewFront(app.ListenConfig{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", SelfSigned: true}, discard(), healthPart{})
	if err != nil {
		t.Fatal(err)
	}
	fp := front.Certificate().Fingerprint()
	if len(fp) != 32*3-1 {
		t.Fatalf("fingerprint %q is not 32 colon-separated bytes", fp)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, discard(), front.Runners()...) }()
	defer func() { cancel(); <-done }()
	<-front.HTTP.Ready()
	pool, err := front.Certificate().CertPool()
	if err != nil {
		t.Fatal(err)
	}
	// Valid for 127.0.0.1 by name, so a client that trusts it verifies the host too.
	got, err := peerFingerprint(front.HTTP.BoundAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if got != plain(fp) {
		t.Fatalf("served %s, printed %s", got, fp)
	}
}

func TestListenConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []app.ListenConfig{
		{HTTPCert: "c.pem"},
		{GRPCKey: "k.pem"},
		{SelfSigned: true, HTTPCert: "c.pem", HTTPKey: "k.pem"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := app.NewFront(app.ListenConfig{HTTPCert: "/nonexistent.pem", HTTPKey: "/nonexistent.key"}, discard()); err == nil {
		t.Error("missing certificate files accepted")
	}
}
