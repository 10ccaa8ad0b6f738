// Command herald-edge runs one edge gateway alone against a NATS cluster: the WebSocket
// dialects and the connections API on HTTP, ConnectionService on gRPC, plus health endpoints. Tokens are verified with the auth service's public
// key, given with -auth.public-key or fetched once from auth over NATS at start.
// Every flag can also be set as HERALD_<FLAG> (nats.url -> HERALD_NATS_URL).
package main

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/redisx"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/services/edge"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, config.ErrPrinted) {
		slog.Error("herald-edge failed", "err", err)
		os.Exit(1)
	}
}

func run() error {
	var appCfg app.Config
	var natsCfg natsx.Config
	var cfg edge.Config
	fs := flag.NewFlagSet("herald-edge", flag.ContinueOnError)
	httpAddr := fs.String("http.addr", "127.0.0.1:8083", "HTTP and WebSocket listen address")
	grpcAddr := fs.String("grpc.addr", "127.0.0.1:9093", "gRPC listen address (ConnectionService)")
	pubKey := fs.String("auth.public-key", "", "auth's Ed25519 public key, base64 (empty: fetch it from auth over NATS)")
	redisURL := fs.String("redis.url", "", "Redis URL (redis://[:password@]host:6379/0) for the connection registry and agent state; empty: this edge's own, in memory")
	appCfg.RegisterFlags(fs)
	natsCfg.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return err
	}
	if err := errors.Join(appCfg.Validate(), natsCfg.Validate(), cfg.Validate()); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := app.SignalContext(context.Background())
	defer stop()

	nc, err := natsCfg.Connect(ctx, "herald-edge", log)
	if err != nil {
		return err
	}
	defer natsx.Drain(nc, appCfg.ShutdownTimeout)
	pub, err := token.ParsePublicKey(*pubKey)
	if *pubKey == "" {
		pub, err = authwire.FetchPublicKey(ctx, nc)
	}
	if err != nil {
		return fmt.Errorf("auth public key: %w", err)
	}
	deps := edge.Deps{NC: nc, Verifier: token.NewVerifier(pub), Log: log, AnnounceConnections: true}
	if *redisURL != "" {
		rdb, err := redisx.Open(ctx, *redisURL, log)
		if err != nil {
			return err
		}
		defer rdb.Close()
		state := agentstate.NewRedis(rdb, agentstate.DefaultRedisPrefix)
		deps.Latest, deps.Facts = state, state
		deps.Registry = registry.NewRedis(rdb, registry.DefaultRedisPrefix)
	}
	e, err := edge.New(cfg, deps)
	if err != nil {
		return err
	}
	health := &app.Health{}
	mux := http.NewServeMux()
	e.Register(mux)
	health.AddDegradedCheck("connection registry", e.Tracker().Check)
	health.Register(mux)
	gs := grpc.NewServer()
	e.RegisterGRPC(gs)
	reflection.Register(gs)
	return appCfg.Run(ctx, log,
		app.Named{Name: "edge", Runner: e},
		app.Named{Name: "grpc", Runner: &app.GRPCServer{Addr: *grpcAddr, Server: gs, Log: log}},
		app.Named{Name: "http", Runner: &app.HTTPServer{Addr: *httpAddr, Handler: e.TrackREST(mux), Log: log}},
		app.Named{Name: "health", Runner: health},
	)
}
