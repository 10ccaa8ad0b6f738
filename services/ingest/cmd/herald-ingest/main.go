// Command herald-ingest runs the ingest service alone against a NATS cluster: gRPC
// EventService (with server reflection, for grpcurl) and HTTP health endpoints.
// Every flag can also be set as HERALD_<FLAG> (nats.url -> HERALD_NATS_URL).
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
	httpAddr := fs.String("http.addr", "127.0.0.1:8082", "HTTP listen address (health)")
	appCfg.RegisterFlags(fs)
	natsCfg.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return err
	}
	if err := errors.Join(appCfg.Validate(), natsCfg.Validate()); err != nil {
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
	svc, err := ingest.New(cfg, ingest.Deps{NC: nc, Log: log})
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
		app.Named{Name: "ingest", Runner: svc},
		app.Named{Name: "grpc", Runner: &app.GRPCServer{Addr: *grpcAddr, Server: gs, Log: log}},
		app.Named{Name: "http", Runner: &app.HTTPServer{Addr: *httpAddr, Handler: mux, Log: log}},
		app.Named{Name: "health", Runner: health},
	)
}
