// Command herald is the all-in-one Herald (`make run`): embedded NATS,
// auth, ingest and edge in one process, HTTP on 127.0.0.1:8080 and gRPC
// on 127.0.0.1:9090. Every flag can also be set as HERALD_<FLAG>.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/services/herald"
)

func main() {
	var cfg herald.Config
	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:]); errors.Is(err, config.ErrPrinted) || errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		os.Exit(2) // flag has already printed the error and usage
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := app.SignalContext(context.Background())
	defer stop()
	stack, err := herald.New(cfg, log)
	if err == nil {
		go func() { <-stack.Ready(); stack.Banner(os.Stdout) }()
		err = stack.Run(ctx)
	}
	if err != nil {
		log.Error("herald failed", "err", err)
		os.Exit(1)
	}
}
