// Command herald-ingest runs the ingest service alone against a NATS cluster: gRPC
// EventService and AgentService (with server reflection, for grpcurl), the agent WebSocket
// (/api/v1/agents/ws), /api/v1/api-keys/me and HTTP health endpoints.
//
// AgentService callers' tokens are verified with auth's public key, given with
// -auth.public-key or fetched once from auth over NATS at start. With redis.url
// (HERALD_REDIS_URL) the latest sample and the facts of each server live in Redis, shared by
// every ingest and edge; without it they are kept in memory, which is right for one ingest only.
// Every flag can also be set as HERALD_<FLAG> (nats.url -> HERALD_NATS_URL).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/heraldhq/herald/pkg/agentstate"
	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/redisx"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/services/ingest"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, config.ErrPrinted) {
		slog.Error("herald-ingest failed", "err", err)
		os.Exit(1)
	}
}

func run() error {
	var appCfg app.Config
	var natsCfg natsx.Config
	var cfg ingest.Config
	fs := flag.NewFlagSet("herald-ingest", flag.ContinueOnError)
	grpcAddr := fs.String("grpc.addr", "127.0.0.1:9092", "gRPC listen address")
	httpAddr := fs.String("http.addr", "127.0.0.1:8082", "HTTP listen address (agent socket, health)")
	pubKey := fs.String("auth.public-key", "", "auth's Ed25519 public key, base64 (empty: fetch it from auth over NATS)")
	redisURL := fs.String("redis.url", "", "Redis URL (redis://[:password@]host:6379/0) for the latest samples, facts and the connection registry; empty keeps them in memory")
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

	nc, err := natsCfg.Connect(ctx, "herald-ingest", log)
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
	deps := ingest.Deps{NC: nc, Log: log, Verifier: token.NewVerifier(pub), AnnounceConnections: true}
	if *redisURL == "" {
		log.Warn("no redis.url: agent state and the connection registry are kept in memory; run one ingest only")
	} else {
		rdb, err := redisx.Open(ctx, *redisURL, log)
		if err != nil {
			return err
		}
		defer rdb.Close()
		deps.State = agentstate.NewRedis(rdb, agentstate.DefaultRedisPrefix)
		deps.Registry = registry.NewRedis(rdb, registry.DefaultRedisPrefix)
	}
	svc, err := ingest.New(cfg, deps)
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	svc.RegisterGRPC(gs)
	reflection.Register(gs)
	health := &app.Health{}
	mux := http.NewServeMux()
	svc.Register(mux)
	health.AddDegradedCheck("connection registry", svc.Tracker().Check)
	health.Register(mux)
	return appCfg.Run(ctx, log,
		app.Named{Name: "ingest", Runner: svc},
		app.Named{Name: "grpc", Runner: &app.GRPCServer{Addr: *grpcAddr, Server: gs, Log: log}},
		app.Named{Name: "http", Runner: &app.HTTPServer{Addr: *httpAddr, Handler: mux, Log: log}},
		app.Named{Name: "health", Runner: health},
	)
}
