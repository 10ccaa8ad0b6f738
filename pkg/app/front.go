package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/reflection"

	"github.com/heraldhq/herald/pkg/metrics"
)

// DevCertValidity is how long a generated development certificate is valid.
const DevCertValidity = 30 * 24 * time.Hour

// ListenConfig is where a process serves: one HTTP/WebSocket listener and one gRPC
// listener, each with TLS from cert/key files when they are set.
type ListenConfig struct {
	HTTPAddr string
	GRPCAddr string
	// HTTPCert and HTTPKey are PEM files; both set serves HTTPS and WSS.
	HTTPCert, HTTPKey string
	// GRPCCert and GRPCKey are PEM files for gRPC; empty means the HTTP pair (so one pair
	// secures both listeners).
	GRPCCert, GRPCKey string
	// SelfSigned generates a certificate for 127.0.0.1 at start and serves both listeners
	// with it (development only; the process prints its SHA-256 fingerprint).
	SelfSigned bool
	// TLSPoll is how often the cert files are checked for a change (0: DefaultTLSPoll).
	TLSPoll time.Duration
}

// RegisterFlags registers http.addr, grpc.addr and the TLS files on fs, with the given
// default addresses.
func (c *ListenConfig) RegisterFlags(fs *flag.FlagSet, httpAddr, grpcAddr string) {
	fs.StringVar(&c.HTTPAddr, "http.addr", httpAddr, "HTTP and WebSocket listen address")
	fs.StringVar(&c.GRPCAddr, "grpc.addr", grpcAddr, "gRPC listen address (server reflection on)")
	fs.StringVar(&c.HTTPCert, "http.tls-cert", "", "PEM certificate (chain) file: serve HTTPS and WSS (with http.tls-key); re-read on SIGHUP and when the files change")
	fs.StringVar(&c.HTTPKey, "http.tls-key", "", "PEM private key file for http.tls-cert")
	fs.StringVar(&c.GRPCCert, "grpc.tls-cert", "", "PEM certificate file for gRPC (empty: the http.tls-cert pair, if any)")
	fs.StringVar(&c.GRPCKey, "grpc.tls-key", "", "PEM private key file for grpc.tls-cert")
}

// RegisterDevFlags registers dev.self-signed-tls, for the all-in-one development process.
func (c *ListenConfig) RegisterDevFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.SelfSigned, "dev.self-signed-tls", false, "generate a self-signed certificate for 127.0.0.1 and serve HTTPS, WSS and gRPC with TLS (development only; its SHA-256 fingerprint is printed)")
}

// Validate reports settings that cannot work.
func (c ListenConfig) Validate() error {
	var errs []error
	pair := func(name, cert, key string) {
		if (cert == "") != (key == "") {
			errs = append(errs, fmt.Errorf("%s.tls-cert and %s.tls-key: set both or neither", name, name))
		}
	}
	pair("http", c.HTTPCert, c.HTTPKey)
	pair("grpc", c.GRPCCert, c.GRPCKey)
	if c.SelfSigned && (c.HTTPCert != "" || c.GRPCCert != "") {
		errs = append(errs, errors.New("dev.self-signed-tls: not with certificate files"))
	}
	return errors.Join(errs...)
}

// Part is a service the process's listeners serve.
type Part interface {
	Register(mux *http.ServeMux)
	RegisterGRPC(s grpc.ServiceRegistrar)
}

// Front is what every Herald process serves its parts on: one HTTP mux with /healthz and
// /readyz, one gRPC server with reflection, TLS when configured. Standalone services and
// the all-in-one process build it the same way, with NewFront.
type Front struct {
	HTTP   *HTTPServer
	GRPC   *GRPCServer
	Health *Health
	Mux    *http.ServeMux

	httpCert, grpcCert *Certificate
	poll               time.Duration
}

// NewFront loads or generates the certificates, registers every part's routes and gRPC
// services, health and reflection. Add health checks to Health and wrap HTTP.Handler
// before running Runners.
func NewFront(cfg ListenConfig, log *slog.Logger, parts ...Part) (*Front, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = orDefault(log)
	f := &Front{Health: &Health{}, Mux: http.NewServeMux(), poll: cfg.TLSPoll}
	var err error
	switch {
	case cfg.SelfSigned:
		if f.httpCert, err = SelfSigned(DevCertValidity); err != nil {
			return nil, err
		}
		f.grpcCert = f.httpCert
	case cfg.HTTPCert != "":
		if f.httpCert, err = LoadCertificate(cfg.HTTPCert, cfg.HTTPKey, log); err != nil {
			return nil, fmt.Errorf("http.tls-cert: %w", err)
		}
		f.grpcCert = f.httpCert
	}
	if cfg.GRPCCert != "" {
		if f.grpcCert, err = LoadCertificate(cfg.GRPCCert, cfg.GRPCKey, log); err != nil {
			return nil, fmt.Errorf("grpc.tls-cert: %w", err)
		}
	}
	var opts []grpc.ServerOption
	if f.grpcCert != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(f.grpcCert.TLSConfig("h2"))))
	}
	gs := grpc.NewServer(opts...)
	for _, p := range parts {
		p.Register(f.Mux)
		p.RegisterGRPC(gs)
	}
	f.Health.Register(f.Mux)
	metrics.Register(f.Mux)
	reflection.Register(gs)
	f.HTTP = &HTTPServer{Addr: cfg.HTTPAddr, Handler: f.Mux, Log: log}
	if f.httpCert != nil {
		f.HTTP.TLS = f.httpCert.TLSConfig("h2", "http/1.1")
	}
	f.GRPC = &GRPCServer{Addr: cfg.GRPCAddr, Server: gs, Log: log}
	return f, nil
}

// TLS reports whether the HTTP listener serves TLS.
func (f *Front) TLS() bool { return f.httpCert != nil }

// GRPCTLS reports whether the gRPC listener serves TLS.
func (f *Front) GRPCTLS() bool { return f.grpcCert != nil }

// Certificate is the HTTP listener's certificate, nil without TLS.
func (f *Front) Certificate() *Certificate { return f.httpCert }

// Runners are the certificate watchers, then gRPC, HTTP and health, in start order: health
// last, so /readyz says ready only once both listeners are bound, and 503 first on stop.
func (f *Front) Runners() []Named {
	var rs []Named
	watched := map[*Certificate]bool{}
	for _, c := range []*Certificate{f.httpCert, f.grpcCert} {
		if c != nil && c.certFile != "" && !watched[c] {
			watched[c] = true
			rs = append(rs, Named{Name: "tls-reload " + c.certFile, Runner: RunnerFunc(func(ctx context.Context) error {
				return c.Run(ctx, f.poll)
			})})
		}
	}
	return append(rs,
		Named{Name: "grpc", Runner: f.GRPC},
		Named{Name: "http", Runner: f.HTTP},
		Named{Name: "health", Runner: f.Health},
	)
}
