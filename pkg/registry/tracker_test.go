package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/registry"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/testutil/redistest"
)

type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) publish(_ context.Context, ev *event.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev.Type+"."+ev.Action+"."+ev.Key)
	return nil
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprint(e.got)
}

func (e *events) count(s string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, g := range e.got {
		if g == s {
			n++
		}
	}
	return n
}

func startTracker(t *testing.T, reg registry.Registry, instance string, ev *events) (*registry.Tracker, func()) {
	t.Helper()
	tr, err := registry.NewTracker(reg, registry.TrackerConfig{Instance: instance, TTL: time.Second,
		RefreshEvery: 200 * time.Millisecond, SweepEvery: 200 * time.Millisecond, OpTimeout: 300 * time.Millisecond,
		Publish: ev.publish})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tr.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return tr, stop
}

func count(t *testing.T, reg registry.Registry, q registry.Query, want int) func() error {
	return func() error {
		cs, err := reg.List(context.Background(), q)
		if err != nil {
			return err
		}
		if len(cs) != want {
			return fmt.Errorf("listed %d, want %d", len(cs), want)
		}
		return nil
	}
}

func TestTrackerTrackUntrackAndEvents(t *testing.T) {
	reg := registry.NewMemory()
	ev := &events{}
	tr, stop := startTracker(t, reg, "edge-a", ev)
	c, untrack := tr.Track(registry.Conn{RemoteAddr: "1.2.3.4:5", Principal: "user:bob", Websocket: true, Endpoint: "drp"}, nil)
	_, untrackREST := tr.Track(registry.Conn{RemoteAddr: "1.2.3.4:6", Principal: "user:bob", Endpoint: "rest"}, nil)
	if c.ID == "" || c.Instance != "edge-a" || c.CreateTime.IsZero() {
		t.Fatalf("Track filled %+v", c)
	}
	testutil.Eventually(t, 5*time.Second, count(t, reg, registry.Query{Instance: "edge-a"}, 2))
	untrack()
	untrack() // idempotent
	untrackREST()
	testutil.Eventually(t, 5*time.Second, count(t, reg, registry.Query{}, 0))
	testutil.Eventually(t, 5*time.Second, func() error {
		if ev.count("connections.create.user:bob") != 1 || ev.count("connections.delete.user:bob") != 1 {
			return fmt.Errorf("events %v: want one create and one delete (none for REST)", ev)
		}
		return nil
	})
	// Graceful stop removes what is still held.
	tr.Track(registry.Conn{RemoteAddr: "1.2.3.4:7", Principal: "user:eve", Websocket: true}, nil)
	testutil.Eventually(t, 5*time.Second, count(t, reg, registry.Query{}, 1))
	stop()
	if err := count(t, reg, registry.Query{}, 0)(); err != nil {
		t.Errorf("after graceful stop: %v", err)
	}
	if ev.count("connections.delete.user:eve") != 1 {
		t.Errorf("no delete event on graceful stop: %v", ev)
	}
}

func TestTrackerKick(t *testing.T) {
	tr, _ := startTracker(t, registry.NewMemory(), "edge-a", &events{})
	got := make(chan string, 1)
	c, _ := tr.Track(registry.Conn{Websocket: true}, func(reason string) { got <- reason })
	other, _ := tr.Track(registry.Conn{Websocket: true}, func(string) { t.Error("wrong connection kicked") })
	_ = other
	if !tr.Kick(c.ID, registry.KickReason("user:admin")) {
		t.Fatal("Kick = false")
	}
	if r := <-got; r != "kicked by user:admin" {
		t.Errorf("reason %q", r)
	}
	if tr.Kick("nope", "x") {
		t.Error("Kick(unknown) = true")
	}
}

// A dead instance's entries expire and the survivor sweeps them, announcing each end once.
func TestTrackerSweepsDeadInstance(t *testing.T) {
	srv := redistest.Start(t)
	rdbA := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	rdbB := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdbA.Close(); rdbB.Close() })
	evA, evB := &events{}, &events{}
	a, stopA := startTracker(t, registry.NewRedis(rdbA, "t:"), "edge-a", evA)
	b, _ := startTracker(t, registry.NewRedis(rdbB, "t:"), "edge-b", evB)
	for i := range 3 {
		a.Track(registry.Conn{RemoteAddr: fmt.Sprintf("1.1.1.1:%d", i), Principal: fmt.Sprintf("user:u%d", i), Websocket: true}, nil)
	}
	b.Track(registry.Conn{RemoteAddr: "2.2.2.2:1", Principal: "user:b", Websocket: true}, nil)
	reg := registry.NewRedis(rdbB, "t:")
	testutil.Eventually(t, 5*time.Second, count(t, reg, registry.Query{}, 4))
	// No goodbye: a loses Redis, then stops.
	rdbA.Close()
	stopA()
	testutil.Eventually(t, 5*time.Second, count(t, reg, registry.Query{}, 1))
	testutil.Eventually(t, 5*time.Second, func() error {
		for i := range 3 {
			if n := evB.count(fmt.Sprintf("connections.delete.user:u%d", i)); n != 1 {
				return fmt.Errorf("survivor published %d deletes for u%d, want 1 (%v)", n, i, evB)
			}
		}
		return nil
	})
	if err := count(t, reg, registry.Query{Instance: "edge-b"}, 1)(); err != nil {
		t.Error(err)
	}
}

// Redis down for a while and back empty: the tracker keeps serving, reports degraded, and
// registers everything again.
func TestTrackerSurvivesRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	reg := registry.NewRedis(rdb, "t:")
	tr, _ := startTracker(t, reg, "edge-a", &events{})
	tr.Track(registry.Conn{RemoteAddr: "1.1.1.1:1", Websocket: true}, nil)
	testutil.Eventually(t, 5*time.Second, count(t, reg, registry.Query{}, 1))
	srv.Stop()
	// Tracking while Redis is down returns at once.
	start := time.Now()
	tr.Track(registry.Conn{RemoteAddr: "1.1.1.1:2", Websocket: true}, nil)
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("Track took %s with Redis down", d)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if tr.Check(context.Background()) == nil {
			return fmt.Errorf("not degraded yet")
		}
		return nil
	})
	srv.Restart()
	testutil.Eventually(t, 5*time.Second, count(t, reg, registry.Query{}, 2))
	testutil.Eventually(t, 5*time.Second, func() error { return tr.Check(context.Background()) })
	if tr.Failures() == 0 {
		t.Error("no failures counted during the outage")
	}
}

// TestTrackerLifecycleServesKicks: with NC set, the one component a service starts (Start)
// also serves kicks for its connections, and stops serving them when stopped.
func TestTrackerLifecycleServesKicks(t *testing.T) {
	ns := natstest.RunServer(t)
	nc := natstest.Connect(t, ns)
	ev := &events{}
	tr, err := registry.NewTracker(registry.NewMemory(), registry.TrackerConfig{Instance: "edge-k", NC: nc, Publish: ev.publish})
	if err != nil {
		t.Fatal(err)
	}
	stop := tr.Start()
	kicked := make(chan string, 1)
	c, untrack := tr.Track(registry.Conn{RemoteAddr: "127.0.0.1:1", Principal: "user:bob", Websocket: true, Endpoint: "drp"},
		func(reason string) { kicked <- reason })
	defer untrack()
	testutil.Eventually(t, 5*time.Second, func() error {
		return registry.Kick(t.Context(), nc, c, "user:admin")
	})
	select {
	case r := <-kicked:
		if r != registry.KickReason("user:admin") {
			t.Fatalf("kick reason %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("kick not delivered")
	}
	untrack()
	stop() // the goodbye publishes the events still queued
	if ev.count("connections.create.user:bob") != 1 || ev.count("connections.delete.user:bob") != 1 {
		t.Errorf("events = %s, want one create and one delete", ev)
	}
	if err := registry.Kick(t.Context(), nc, c, "user:admin"); !errors.Is(err, registry.ErrNotHeld) {
		t.Errorf("kick after stop = %v, want ErrNotHeld", err)
	}
}
