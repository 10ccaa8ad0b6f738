// Package app is the one process lifecycle every Herald binary shares:
// runners start in dependency order and stop in reverse, one at a time,
// within a shutdown timeout.
//
//	start:  r0 → r1 → … → rn   (each waits for the previous one's Ready, if it has one)
//	stop:   rn → … → r1 → r0   (ctx done, or any runner returned early)
package app

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Runner is a long-running part of a process.
type Runner interface {
	// Run blocks until ctx is done, then drains and returns nil once every
	// goroutine it started has exited. It returns an error if it cannot
	// start or fails while running.
	Run(ctx context.Context) error
}

// Readier is implemented by runners that take a while to become useful
// (a listener to bind, a connection to make). Run waits for Ready to close
// before starting the next runner, so later runners may rely on earlier ones.
type Readier interface {
	Ready() <-chan struct{}
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context) error

// Run calls f(ctx).
func (f RunnerFunc) Run(ctx context.Context) error { return f(ctx) }

// Named is a runner with the name used in logs and errors.
type Named struct {
	Name   string
	Runner Runner
}

// DefaultShutdownTimeout bounds the whole shutdown unless configured.
const DefaultShutdownTimeout = 30 * time.Second

// Config holds the process lifecycle settings.
type Config struct {
	// ShutdownTimeout bounds stopping every runner. Zero means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// DrainDelay is how long a stopping process keeps serving with /readyz at 503, so load
	// balancers take it out before its listeners close (Health.DrainDelay).
	DrainDelay time.Duration
}

// RegisterFlags registers app.shutdown-timeout on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.ShutdownTimeout, "app.shutdown-timeout", DefaultShutdownTimeout, "how long stopping all components may take before the process gives up")
	fs.DurationVar(&c.DrainDelay, "app.drain-delay", 0, "on shutdown, keep serving this long with /readyz at 503 so load balancers stop sending traffic (part of app.shutdown-timeout)")
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	if c.ShutdownTimeout < 0 {
		return errors.New("app.shutdown-timeout: must not be negative")
	}
	if c.DrainDelay < 0 {
		return errors.New("app.drain-delay: must not be negative")
	}
	if timeout := cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout); c.DrainDelay >= timeout {
		return fmt.Errorf("app.drain-delay: %s leaves nothing of app.shutdown-timeout %s to stop in", c.DrainDelay, timeout)
	}
	return nil
}

// Run runs runners with the default Config; see Config.Run.
func Run(ctx context.Context, log *slog.Logger, runners ...Named) error {
	return Config{}.Run(ctx, log, runners...)
}

// ErrShutdownTimeout is returned when runners did not stop in time.
var ErrShutdownTimeout = errors.New("app: shutdown timed out")

// running is one started runner.
type running struct {
	Named
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned; err is then set
	err    error
	// reported is set once an early exit was recorded, so the error is
	// handled once.
	reported bool
}

// Run starts runners in order, each with its own child context of ctx,
// waiting for each Readier to be ready before starting the next. When ctx
// is done, or any runner returns early, it stops the started runners in
// reverse order, one at a time, each awaited, all within the shutdown
// timeout. It returns the first real error: an early exit, a runner's
// failure, or ErrShutdownTimeout; nil after a clean shutdown.
func (c Config) Run(ctx context.Context, log *slog.Logger, runners ...Named) error {
	timeout := c.ShutdownTimeout
	if timeout == 0 {
		timeout = DefaultShutdownTimeout
	}
	exited := make(chan *running, len(runners)) // any runner returning
	var started []*running
	var firstErr error
	record := func(err error) {
		if firstErr == nil && err != nil {
			firstErr = err
		}
	}

	stopping := false
	for _, n := range runners {
		r := &running{Named: n, done: make(chan struct{})}
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r.cancel = cancel
		started = append(started, r)
		log.Debug("starting", "component", n.Name)
		go func() {
			defer close(r.done)
			r.err = n.Runner.Run(rctx)
			exited <- r
		}()
		if rd, ok := n.Runner.(Readier); ok {
			select {
			case <-rd.Ready():
			case r := <-exited:
				record(earlyExit(r))
				stopping = true
			case <-ctx.Done():
				stopping = true
			}
		}
		if stopping {
			break
		}
	}

	if !stopping {
		log.Info("started", "components", len(started))
		select {
		case <-ctx.Done():
			log.Info("shutting down", "cause", context.Cause(ctx))
		case r := <-exited:
			err := earlyExit(r)
			record(err)
			log.Error("component stopped early; shutting down", "component", r.Name, "err", err)
		}
	}

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i := len(started) - 1; i >= 0; i-- {
		r := started[i]
		r.cancel()
		select {
		case <-r.done:
			if r.err != nil && !r.reported && !errors.Is(r.err, context.Canceled) {
				record(fmt.Errorf("%s: %w", r.Name, r.err))
				log.Error("component stopped with error", "component", r.Name, "err", r.err)
			} else {
				log.Debug("stopped", "component", r.Name)
			}
		case <-deadline.C:
			// Cancel the rest so they stop as soon as they can, but do not
			// wait: the process is about to exit.
			for j := i - 1; j >= 0; j-- {
				started[j].cancel()
			}
			log.Error("shutdown timed out", "component", r.Name, "timeout", timeout)
			record(fmt.Errorf("%w after %s waiting for %s", ErrShutdownTimeout, timeout, r.Name))
			return firstErr
		}
	}
	return firstErr
}

// earlyExit turns a runner's return before shutdown into an error: a
// runner that stops on its own, even without error, leaves the process
// without one of its parts.
func earlyExit(r *running) error {
	r.reported = true
	if r.err != nil {
		return fmt.Errorf("%s: %w", r.Name, r.err)
	}
	return fmt.Errorf("%s: stopped before shutdown", r.Name)
}

// SignalContext returns a context cancelled by the first SIGINT or
// SIGTERM. After that first signal the default handling is restored, so a
// second Ctrl-C ends the process at once instead of waiting for the drain.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}
