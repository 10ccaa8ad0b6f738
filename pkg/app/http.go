package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultStopTimeout bounds a server's graceful stop unless configured.
const DefaultStopTimeout = 10 * time.Second

// HTTPServer is a Runner serving Handler on Addr. It owns its listener;
// with port 0, BoundAddr() tells the bound address once Ready is closed.
type HTTPServer struct {
	// Addr is host:port to listen on, e.g. 127.0.0.1:8080 or 127.0.0.1:0.
	Addr    string
	Handler http.Handler
	// Log receives the bound address and serve errors. Nil means slog.Default().
	Log *slog.Logger
	// StopTimeout bounds Shutdown, after which open connections are closed.
	// Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// ReadHeaderTimeout guards against slow clients. Zero means 10s.
	ReadHeaderTimeout time.Duration
	// TLS, if set, serves HTTPS (and WSS) with it; HTTP/2 is offered by ALPN.
	TLS *tls.Config

	once  sync.Once
	ready chan struct{}
	bound net.Addr
}

func (s *HTTPServer) init() { s.once.Do(func() { s.ready = make(chan struct{}) }) }

// Ready is closed once the listener is bound.
func (s *HTTPServer) Ready() <-chan struct{} {
	s.init()
	return s.ready
}

// BoundAddr returns the address the listener is bound to (the real port
// when Addr asked for port 0), or "" before Ready.
func (s *HTTPServer) BoundAddr() string {
	select {
	case <-s.Ready():
		return s.bound.String()
	default:
		return ""
	}
}

// Run listens, serves until ctx is done, then shuts down gracefully.
// Shutdown does not wait for hijacked connections (WebSockets): their
// owners close them when their own Run stops.
func (s *HTTPServer) Run(ctx context.Context) error {
	s.init()
	log := orDefault(s.Log)
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", s.Addr, err)
	}
	srv := &http.Server{
		Handler:           s.Handler,
		TLSConfig:         s.TLS,
		ReadHeaderTimeout: orDuration(s.ReadHeaderTimeout, 10*time.Second),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.bound = l.Addr()
	close(s.ready)
	log.Info("http listening", "addr", s.bound.String(), "tls", s.TLS != nil)

	served := make(chan error, 1)
	go func() {
		if s.TLS != nil {
			// The certificate comes from TLS.GetCertificate: no files here.
			served <- srv.ServeTLS(l, "", "")
			return
		}
		served <- srv.Serve(l)
	}()
	select {
	case err := <-served:
		return fmt.Errorf("http serve %s: %w", s.bound, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orDuration(s.StopTimeout, DefaultStopTimeout))
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("http serve %s: %w", s.bound, serr)
	}
	if err != nil {
		return fmt.Errorf("http shutdown %s: %w", s.bound, err)
	}
	return nil
}

func orDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
