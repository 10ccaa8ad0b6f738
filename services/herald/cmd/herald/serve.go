package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/services/herald"
)

func (c *cli) serveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve [-flag value...]",
		Short: "Run the all-in-one Herald: embedded NATS, auth, ingest and edge in one process",
		Long: `serve runs what 'make run' runs: every HTTP/WebSocket route on 127.0.0.1:8080, every
gRPC service on 127.0.0.1:9090, and the console at /console/. It takes the services' own
flags (Go style, single dash; 'herald serve -help' lists them), each also an environment
variable HERALD_<FLAG>; -print-config shows the configuration with secrets redacted.
Ctrl-C drains and exits; a second Ctrl-C exits at once.`,
		Example: `  herald serve
  HERALD_ADMIN_PASSWORD=secret herald serve -http.addr 127.0.0.1:8081
  herald serve -redis.url redis://127.0.0.1:6379/0 -print-config`,
		// The services' flags are Go flag sets with HERALD_* environment defaults: parse
		// them there, not with cobra's flags.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfg herald.Config
			fs := flag.NewFlagSet("herald serve", flag.ContinueOnError)
			fs.SetOutput(c.stderr)
			cfg.RegisterFlags(fs)
			if err := config.Parse(fs, args); errors.Is(err, config.ErrPrinted) || errors.Is(err, flag.ErrHelp) {
				return nil
			} else if err != nil {
				return withCode(exitUsage, errSilent) // flag has printed the error and usage
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			ctx, stop := app.SignalContext(cmd.Context())
			defer stop()
			stack, err := herald.New(cfg, log)
			if err != nil {
				return withCode(exitUsage, err)
			}
			go func() { <-stack.Ready(); stack.Banner(c.stdout) }()
			return stack.Run(ctx)
		},
	}
}
