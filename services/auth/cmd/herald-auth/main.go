// Command herald-auth runs the auth service alone against a NATS cluster:
// HTTP login (/api/v1/auth/login, Salt's /login) and health, gRPC
// AuthService (with server reflection), and herald.auth.* on NATS.
// Every flag can also be set as HERALD_<FLAG> (auth.token-ttl ->
// HERALD_AUTH_TOKEN_TTL); the admin password also as HERALD_ADMIN_PASSWORD.
// With redis.url (HERALD_REDIS_URL) users and API keys live in Redis and
// replicas share them; without it they live in memory and die with the
// process.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/redisx"
	"github.com/heraldhq/herald/services/auth"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, config.ErrPrinted) && !errors.Is(err, flag.ErrHelp) {
		slog.Error("herald-auth failed", "err", err)
		os.Exit(1)
	}
}

func run() error {
	var appCfg app.Config
	var natsCfg natsx.Config
	var cfg auth.Config
	fs := flag.NewFlagSet("herald-auth", flag.ContinueOnError)
	httpAddr := fs.String("http.addr", "127.0.0.1:8081", "HTTP listen address (login, health)")
	grpcAddr := fs.String("grpc.addr", "127.0.0.1:9091", "gRPC listen address")
	redisURL := fs.String("redis.url", "", "Redis URL (redis://[:password@]host:6379/0) for users and API keys; empty keeps them in memory")
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

	nc, err := natsCfg.Connect(ctx, "herald-auth", log)
	if err != nil {
		return err
	}
	defer natsx.Drain(nc, appCfg.ShutdownTimeout)
	store, closeStore, err := openStore(ctx, *redisURL, log)
	if err != nil {
		return err
	}
	defer closeStore()
	svc, err := auth.New(cfg, auth.Deps{NC: nc, Log: log, Store: store})
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	svc.RegisterGRPC(gs)
	reflection.Register(gs)
	health := &app.Health{}
	mux := http.NewServeMux()
	svc.Register(mux)
	health.Register(mux)
	return appCfg.Run(ctx, log,
		app.Named{Name: "auth", Runner: svc},
		app.Named{Name: "grpc", Runner: &app.GRPCServer{Addr: *grpcAddr, Server: gs, Log: log}},
		app.Named{Name: "http", Runner: &app.HTTPServer{Addr: *httpAddr, Handler: mux, Log: log}},
		app.Named{Name: "health", Runner: health},
	)
}

// openStore uses Redis when url is set; else it returns a memory store.
func openStore(ctx context.Context, url string, log *slog.Logger) (auth.Store, func(), error) {
	if url == "" {
		log.Warn("no redis.url: users and API keys are kept in memory and lost on restart")
		return auth.NewMemoryStore(), func() {}, nil
	}
	rdb, err := redisx.Open(ctx, url, log)
	if err != nil {
		return nil, nil, err
	}
	return auth.NewRedisStore(rdb, auth.DefaultRedisPrefix), func() { rdb.Close() }, nil
}
