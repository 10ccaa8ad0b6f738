// Command herald-agent runs Herald's host agent: it streams this machine's
// metrics, facts and log lines to an ingest and, when started with
// -enable-commands, runs the commands and Docker actions sent to it.
// Every flag can also be set as HERALD_<FLAG> (api-key -> HERALD_API_KEY).
//
//	HERALD_API_KEY=hk_... herald-agent -url ws://127.0.0.1:8080/api/v1/agents/ws -log-files /var/log/syslog
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/services/agent"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, config.ErrPrinted) && !errors.Is(err, flag.ErrHelp) {
		slog.Error("herald-agent failed", "err", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg agent.Config
	fs := flag.NewFlagSet("herald-agent", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a, err := agent.New(cfg, agent.Deps{Log: log})
	if err != nil {
		return err
	}
	// Not pkg/app: it would link gRPC into a binary that needs none.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}
