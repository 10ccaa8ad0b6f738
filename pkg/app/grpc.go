package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// GRPCServer is a Runner serving Server on Addr. It owns its listener;
// with port 0, BoundAddr() tells the bound address once Ready is closed.
type GRPCServer struct {
	// Addr is host:port to listen on, e.g. 127.0.0.1:9090 or 127.0.0.1:0.
	Addr   string
	Server *grpc.Server
	// Log receives the bound address. Nil means slog.Default().
	Log *slog.Logger
	// StopTimeout bounds GracefulStop, after which Stop cancels the calls
	// still running. Zero means DefaultStopTimeout.
	StopTimeout time.Duration

	once  sync.Once
	ready chan struct{}
	bound net.Addr
}

func (s *GRPCServer) init() { s.once.Do(func() { s.ready = make(chan struct{}) }) }

// Ready is closed once the listener is bound.
func (s *GRPCServer) Ready() <-chan struct{} {
	s.init()
	return s.ready
}

// BoundAddr returns the address the listener is bound to (the real port
// when Addr asked for port 0), or "" before Ready.
func (s *GRPCServer) BoundAddr() string {
	select {
	case <-s.Ready():
		return s.bound.String()
	default:
		return ""
	}
}

// Run listens, serves until ctx is done, then stops gracefully: no new
// calls, running calls may finish within StopTimeout.
func (s *GRPCServer) Run(ctx context.Context) error {
	s.init()
	log := orDefault(s.Log)
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("grpc listen %s: %w", s.Addr, err)
	}
	s.bound = l.Addr()
	close(s.ready)
	log.Info("grpc listening", "addr", s.bound.String())

	served := make(chan error, 1)
	go func() { served <- s.Server.Serve(l) }()
	select {
	case err := <-served:
		return fmt.Errorf("grpc serve %s: %w", s.bound, err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		s.Server.GracefulStop()
		close(stopped)
	}()
	timeout := orDuration(s.StopTimeout, DefaultStopTimeout)
	var stopErr error
	select {
	case <-stopped:
	case <-time.After(timeout):
		s.Server.Stop() // makes GracefulStop return too
		<-stopped
		stopErr = fmt.Errorf("grpc %s: graceful stop exceeded %s; calls cancelled", s.bound, timeout)
	}
	// Serve returns nil after GracefulStop/Stop.
	if err := <-served; err != nil {
		return fmt.Errorf("grpc serve %s: %w", s.bound, err)
	}
	return stopErr
}
