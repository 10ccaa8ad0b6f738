package app_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/pkg/testutil"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// journal records lifecycle events from several goroutines.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, fmt.Sprintf(format, args...))
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// step is a runner that records its start and stop, is ready at once, and
// checks on stop that the runner it depends on is still running.
type step struct {
	name  string
	j     *journal
	dep   *step
	ctx   context.Context
	ready chan struct{}
	mu    sync.Mutex
}

func newStep(name string, j *journal, dep *step) *step {
	return &step{name: name, j: j, dep: dep, ready: make(chan struct{})}
}

func (s *step) Ready() <-chan struct{} { return s.ready }

func (s *step) Run(ctx context.Context) error {
	if s.dep != nil {
		select {
		case <-s.dep.ready:
		default:
			return fmt.Errorf("%s started before %s was ready", s.name, s.dep.name)
		}
	}
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	s.j.add("start %s", s.name)
	close(s.ready)
	<-ctx.Done()
	if s.dep != nil && s.dep.context().Err() != nil {
		return fmt.Errorf("%s stopping after its dependency %s", s.name, s.dep.name)
	}
	s.j.add("stop %s", s.name)
	return nil
}

func (s *step) context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

func TestRunStartsInOrderStopsInReverse(t *testing.T) {
	t.Parallel()
	j := &journal{}
	a := newStep("a", j, nil)
	b := newStep("b", j, a)
	c := newStep("c", j, b)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		errc <- app.Run(ctx, discard(), app.Named{Name: "a", Runner: a}, app.Named{Name: "b", Runner: b}, app.Named{Name: "c", Runner: c})
	}()
	testutil.Eventually(t, 10*time.Second, func() error {
		if len(j.get()) < 3 {
			return fmt.Errorf("started: %v", j.get())
		}
		return nil
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v, want nil after a clean shutdown", err)
	}
	want := []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}
	if got := j.get(); !slices.Equal(got, want) {
		t.Fatalf("lifecycle = %v, want %v", got, want)
	}
}

func TestRunEarlyErrorStopsAllAndIsReturned(t *testing.T) {
	t.Parallel()
	j := &journal{}
	a := newStep("a", j, nil)
	boom := errors.New("boom")
	fail := make(chan struct{})
	failing := app.RunnerFunc(func(ctx context.Context) error {
		select {
		case <-fail:
			return boom
		case <-ctx.Done():
			return errors.New("failing runner was cancelled instead of failing")
		}
	})
	c := newStep("c", j, nil)
	errc := make(chan error, 1)
	go func() {
		errc <- app.Run(t.Context(), discard(), app.Named{Name: "a", Runner: a}, app.Named{Name: "failing", Runner: failing}, app.Named{Name: "c", Runner: c})
	}()
	testutil.Eventually(t, 10*time.Second, func() error {
		if len(j.get()) < 2 {
			return fmt.Errorf("started: %v", j.get())
		}
		return nil
	})
	close(fail)
	var err error
	select {
	case err = <-errc:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a runner failed")
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want it to wrap boom", err)
	}
	want := []string{"start a", "start c", "stop c", "stop a"}
	if got := j.get(); !slices.Equal(got, want) {
		t.Fatalf("lifecycle = %v, want %v", got, want)
	}
}

func TestRunNilEarlyExitIsAnError(t *testing.T) {
	t.Parallel()
	err := app.Run(t.Context(), discard(), app.Named{Name: "oneshot", Runner: app.RunnerFunc(func(context.Context) error { return nil })})
	if err == nil {
		t.Fatal("Run = nil, want an error for a runner that stopped on its own")
	}
}

func TestRunShutdownTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stuck := app.RunnerFunc(func(context.Context) error { <-release; return nil })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	err := app.Config{ShutdownTimeout: 50 * time.Millisecond}.Run(ctx, discard(), app.Named{Name: "stuck", Runner: stuck})
	if !errors.Is(err, app.ErrShutdownTimeout) {
		t.Fatalf("Run = %v, want ErrShutdownTimeout", err)
	}
	if el := time.Since(start); el > 30*time.Second { // guards against waiting forever
		t.Fatalf("Run took %s with a 50ms shutdown timeout", el)
	}
}

func TestRunStopsWhileWaitingForReady(t *testing.T) {
	t.Parallel()
	never := make(chan struct{})
	r := &neverReady{ready: never}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- app.Run(ctx, discard(), app.Named{Name: "slow", Runner: r}) }()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run blocked waiting for a runner that never became ready")
	}
}

type neverReady struct{ ready chan struct{} }

func (n *neverReady) Ready() <-chan struct{}        { return n.ready }
func (n *neverReady) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func TestSignalContext(t *testing.T) {
	ctx, stop := app.SignalContext(t.Context())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("context not cancelled by SIGTERM")
	}
}
