// Package servicemain is the main of every standalone Herald service: flags with HERALD_*
// environment variables, logging, signals, the NATS connection, Redis when configured, the
// auth public key when the service verifies tokens, and one HTTP and one gRPC listener with
// health endpoints (app.Front, as the all-in-one process), started in order and stopped in reverse. A service's main says only how
// to build the service from that.
package servicemain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/authwire"
	"github.com/heraldhq/herald/pkg/config"
	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/redisx"
	"github.com/heraldhq/herald/pkg/token"
)

// Options describe a service's command.
type Options struct {
	Name     string // the binary, e.g. "herald-edge"; also its NATS connection name
	HTTPAddr string // default http.addr
	GRPCAddr string // default grpc.addr
	// Verifies: the service checks tokens, so it gets auth's public key (-auth.public-key,
	// else fetched from auth over NATS at start).
	Verifies bool
	// RedisFor says what Redis holds for this service, for the redis.url flag's help.
	RedisFor string
}

// Env is what a service is built from.
type Env struct {
	Ctx      context.Context
	NC       *nats.Conn
	Log      *slog.Logger
	Redis    *redis.Client  // nil without redis.url
	Verifier token.Verifier // nil unless Options.Verifies
}

// Service is what every Herald service provides.
type Service interface {
	app.Runner
	app.Part
}

// Built is a service and how the process serves it.
type Built struct {
	Service Service
	// Wrap, if set, wraps the HTTP handler (the edge lists requests in flight).
	Wrap func(http.Handler) http.Handler
	// Degraded, if set, is a readiness check the service keeps serving without.
	Degraded func(ctx context.Context) error
	// Ready, if set, is a readiness check besides the NATS round trip every service has
	// (ingest: the event stream takes writes).
	Ready func(ctx context.Context) error
}

// Main runs the command and exits the process: 0 after a clean shutdown, 1 on an error.
func Main(opts Options, registerFlags func(*flag.FlagSet), build func(Env) (Built, error)) {
	if err := run(opts, registerFlags, build); err != nil && !errors.Is(err, config.ErrPrinted) {
		slog.Error(opts.Name+" failed", "err", err)
		os.Exit(1)
	}
}

func run(opts Options, registerFlags func(*flag.FlagSet), build func(Env) (Built, error)) error {
	var appCfg app.Config
	var natsCfg natsx.Config
	var listen app.ListenConfig
	fs := flag.NewFlagSet(opts.Name, flag.ContinueOnError)
	listen.RegisterFlags(fs, opts.HTTPAddr, opts.GRPCAddr)
	var pubKey, redisURL *string
	if opts.Verifies {
		pubKey = fs.String("auth.public-key", "", "auth's Ed25519 public key, base64, fixed (empty: follow auth's published key set and revocations in JetStream)")
	}
	if opts.RedisFor != "" {
		redisURL = fs.String("redis.url", "", "Redis URL (redis://[:password@]host:6379/0) for "+opts.RedisFor+"; empty: memory, this process only")
	}
	appCfg.RegisterFlags(fs)
	natsCfg.RegisterFlags(fs)
	registerFlags(fs)
	if err := config.Parse(fs, os.Args[1:]); err != nil {
		return err
	}
	if err := errors.Join(appCfg.Validate(), natsCfg.Validate(), listen.Validate()); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := app.SignalContext(context.Background())
	defer stop()

	nc, err := natsCfg.Connect(ctx, opts.Name, log)
	if err != nil {
		return err
	}
	defer natsx.Drain(nc, appCfg.ShutdownTimeout)
	env := Env{Ctx: ctx, NC: nc, Log: log}
	if pubKey != nil {
		if env.Verifier, err = tokenVerifier(ctx, nc, *pubKey, log); err != nil {
			return err
		}
	}
	if redisURL != nil && *redisURL != "" {
		if env.Redis, err = redisx.Open(ctx, *redisURL, log); err != nil {
			return err
		}
		defer env.Redis.Close()
	} else if redisURL != nil {
		log.Warn("no redis.url: " + opts.RedisFor + " kept in memory, for this process only")
	}
	b, err := build(env)
	if err != nil {
		return err
	}

	front, err := app.NewFront(listen, log, b.Service)
	if err != nil {
		return err
	}
	front.Health.DrainDelay = appCfg.DrainDelay
	probe, err := natsx.ServeHealth(nc, opts.Name)
	if err != nil {
		return err
	}
	front.Health.AddCheck("nats", probe.Check)
	if b.Ready != nil {
		front.Health.AddCheck(opts.Name, b.Ready)
	}
	if b.Degraded != nil {
		front.Health.AddDegradedCheck(opts.Name, b.Degraded)
	}
	if b.Wrap != nil {
		front.HTTP.Handler = b.Wrap(front.Mux)
	}
	return appCfg.Run(ctx, log, append([]app.Named{{Name: opts.Name, Runner: b.Service}}, front.Runners()...)...)
}

// tokenVerifier is the verifier of a service that checks tokens: with a configured public key,
// that key alone; otherwise an authwire.Trust following auth's published key set and
// revocations for as long as ctx lives. It does not wait for auth: until a key is known,
// tokens are refused as unavailable (503), and the service serves meanwhile.
func tokenVerifier(ctx context.Context, nc *nats.Conn, pubKey string, log *slog.Logger) (token.Verifier, error) {
	if pubKey != "" {
		pub, err := token.ParsePublicKey(pubKey)
		if err != nil {
			return nil, fmt.Errorf("auth public key: %w", err)
		}
		return token.NewVerifier(pub), nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("auth key set: %w", err)
	}
	trust := authwire.NewTrust(js, log)
	go func() { _ = trust.Run(ctx) }()
	return trust.Verifier(), nil
}
