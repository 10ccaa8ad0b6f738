package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
)

// fakeSink is a client as the hub sees it, with no socket behind it.
type fakeSink struct {
	mu     sync.Mutex
	frames []string
	closed *wsconn.Disconnect
}

func (s *fakeSink) Deliver(frame []byte, _ uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		return false
	}
	s.frames = append(s.frames, string(frame))
	return true
}

func (s *fakeSink) Close(d wsconn.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		s.closed = &d
	}
}

func (s *fakeSink) got() ([]string, *wsconn.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.frames...), s.closed
}

// waitFrames waits until the sink holds n frames and returns them.
func (s *fakeSink) waitFrames(t *testing.T, n int) []string {
	t.Helper()
	var frames []string
	testutil.Eventually(t, 5*time.Second, func() error {
		frames, _ = s.got()
		if len(frames) < n {
			return fmt.Errorf("%d of %d frames", len(frames), n)
		}
		return nil
	})
	return frames
}

// echo renders a message as subject=payload; fail refuses every message.
type (
	echo struct{}
	fail struct{}
)

func (echo) Encode(m *hub.Message) ([]byte, error) {
	return []byte(m.Subject + "=" + string(m.Data)), nil
}
func (fail) Encode(*hub.Message) ([]byte, error) { return nil, errors.New("cannot encode") }

type rig struct {
	t   *testing.T
	hub *hub.Hub
	nc  *nats.Conn // the hub's
	pub *nats.Conn
	run func() // starts the dispatcher (once)
}

func newRig(t *testing.T, cfg hub.Config) *rig {
	t.Helper()
	ns := natstest.RunServer(t)
	nc := natstest.Connect(t, ns)
	h := hub.New(nc, cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var once sync.Once
	run := func() { once.Do(func() { go func() { done <- h.Run(ctx) }() }) }
	t.Cleanup(func() {
		run()
		cancel()
		<-done
	})
	return &rig{t: t, hub: h, nc: nc, pub: natstest.Connect(t, ns), run: run}
}

func (r *rig) client(enc hub.Encoder, subjects ...string) (*hub.Client, *fakeSink) {
	r.t.Helper()
	s := &fakeSink{}
	c, err := r.hub.NewClient(s, enc)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, subj := range subjects {
		if err := r.hub.Subscribe(r.t.Context(), c, []string{subj}); err != nil {
			r.t.Fatal(err)
		}
	}
	return c, s
}

func (r *rig) publish(subj, payload string) {
	r.t.Helper()
	if err := r.pub.Publish(subj, []byte(payload)); err != nil {
		r.t.Fatal(err)
	}
	if err := r.pub.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// waitRead waits until the hub's connection has read n messages from NATS (delivered to the
// hub's channel, or dropped when it was full).
func (r *rig) waitRead(n uint64) {
	r.t.Helper()
	testutil.Eventually(r.t, 5*time.Second, func() error {
		if got := r.nc.Stats().InMsgs; got < n {
			return fmt.Errorf("the hub's connection read %d of %d messages", got, n)
		}
		return nil
	})
}

// TestOneSubscriptionPerFilter: fifty clients on one filter cost one NATS subscription, every
// one of them gets each message, and the subscription goes with the last client.
func TestOneSubscriptionPerFilter(t *testing.T) {
	r := newRig(t, hub.Config{})
	r.run()
	var clients []*hub.Client
	var sinks []*fakeSink
	for range 50 {
		c, s := r.client(echo{}, "a.*")
		clients, sinks = append(clients, c), append(sinks, s)
	}
	if n := r.hub.Subscriptions(); n != 1 {
		t.Fatalf("%d NATS subscriptions for one filter, want 1", n)
	}
	r.publish("a.x", "1")
	for _, s := range sinks {
		if f := s.waitFrames(t, 1); f[0] != "a.x=1" {
			t.Fatalf("got %q", f)
		}
	}
	for _, c := range clients {
		r.hub.Remove(c)
	}
	if n, c := r.hub.Subscriptions(), r.hub.Clients(); n != 0 || c != 0 {
		t.Fatalf("after removing every client: %d subscriptions, %d clients, want 0 and 0", n, c)
	}
}

// TestOverlappingFiltersDeliverOnce: a message matching two of a client's filters arrives once,
// through the earlier; one matching only the later arrives too; unsubscribing one filter
// leaves the other working.
func TestOverlappingFiltersDeliverOnce(t *testing.T) {
	r := newRig(t, hub.Config{})
	r.run()
	c, s := r.client(echo{}, "e.profiles.*", "e.*.*")
	r.publish("e.profiles.save", "1")
	r.publish("e.machines.save", "2")
	r.publish("e.profiles.delete", "3")
	frames := s.waitFrames(t, 3)
	want := []string{"e.profiles.save=1", "e.machines.save=2", "e.profiles.delete=3"}
	if strings.Join(frames, " ") != strings.Join(want, " ") {
		t.Fatalf("got %q, want %q (each once, in order)", frames, want)
	}
	r.hub.Unsubscribe(c, []string{"e.profiles.*"})
	r.publish("e.profiles.save", "4")
	if f := s.waitFrames(t, 4); f[3] != "e.profiles.save=4" {
		t.Fatalf("after unsubscribing the earlier filter the later one should carry it: %q", f)
	}
	if n := r.hub.Delivered(); n != 4 {
		t.Fatalf("delivered %d, want 4", n)
	}
}

// TestEncoderFailureSkipsOnlyItsClients: clients of an encoder that fails get nothing and the
// message is counted; clients of another encoder on the same filter still get it.
func TestEncoderFailureSkipsOnlyItsClients(t *testing.T) {
	r := newRig(t, hub.Config{})
	r.run()
	_, bad := r.client(fail{}, "x.>")
	_, good := r.client(echo{}, "x.>")
	r.publish("x.y", "1")
	good.waitFrames(t, 1)
	testutil.Eventually(t, 5*time.Second, func() error {
		if r.hub.Undecodable() != 1 {
			return errors.New("undecodable not counted")
		}
		return nil
	})
	if f, closed := bad.got(); len(f) != 0 || closed != nil {
		t.Fatalf("the failing encoder's client got %q, closed %v; want nothing", f, closed)
	}
}

// TestDropsCloseClientsEvenWhenQuiet: with room for one inbound message, a burst on one filter
// is dropped by NATS while the dispatcher is held; those clients are closed as slow with a
// reason, even though their filter never gets another message. The other filter's client,
// whose one message was queued, gets it and stays open.
func TestDropsCloseClientsEvenWhenQuiet(t *testing.T) {
	r := newRig(t, hub.Config{Inbound: 1})
	_, keep := r.client(echo{}, "keep")
	_, lossy := r.client(echo{}, "lossy")
	r.publish("keep", "1") // fills the inbound channel
	r.waitRead(1)
	for i := range 10 {
		r.publish("lossy", fmt.Sprint(i)) // nowhere to go: dropped and counted
	}
	r.waitRead(11)
	r.run()
	keep.waitFrames(t, 1)
	testutil.Eventually(t, 5*time.Second, func() error {
		if _, closed := lossy.got(); closed == nil {
			return errors.New("the quiet filter's client was not told")
		}
		return nil
	})
	_, closed := lossy.got()
	if closed.Code != wsconn.DisconnectSlow.Code || !strings.Contains(closed.Reason, "10 events dropped") {
		t.Fatalf("closed %+v, want %d with the number dropped", closed, wsconn.DisconnectSlow.Code)
	}
	if _, closed := keep.got(); closed != nil {
		t.Fatalf("a client that lost nothing was closed: %+v", closed)
	}
}

// TestShutdownClosesEveryClient: Shutdown refuses new clients, closes live ones with the given
// close and waits for their removal.
func TestShutdownClosesEveryClient(t *testing.T) {
	r := newRig(t, hub.Config{})
	r.run()
	c1, s1 := r.client(echo{}, "a")
	c2, s2 := r.client(echo{}, "b")
	done := make(chan error, 1)
	go func() { done <- r.hub.Shutdown(context.Background(), wsconn.DisconnectRestart) }()
	testutil.Eventually(t, 5*time.Second, func() error {
		for _, s := range []*fakeSink{s1, s2} {
			if _, closed := s.got(); closed == nil || *closed != wsconn.DisconnectRestart {
				return errors.New("not every client closed with 1012")
			}
		}
		return nil
	})
	if _, err := r.hub.NewClient(&fakeSink{}, echo{}); !errors.Is(err, hub.ErrClosed) {
		t.Fatalf("NewClient after Shutdown: %v, want ErrClosed", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v before its clients were removed", err)
	default:
	}
	r.hub.Remove(c1)
	r.hub.Remove(c2)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// position renders a message as subject@position.
type position struct{}

func (position) Encode(m *hub.Message) ([]byte, error) {
	return []byte(m.Subject + "@" + m.Position), nil
}

// TestPositionsPerStream: events and a server's telemetry come from their own streams'
// republished copies, each with its own sequences and epoch, one NATS subscription per filter;
// a stream created anew is reported as reset for that stream only.
func TestPositionsPerStream(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var resets []string
	r := newRig(t, hub.Config{
		Epoch: func(stream string) string {
			return map[string]string{subject.EventStream: "ev", subject.TelemetryStream: "tm"}[stream]
		},
		StreamReset: func(stream string) {
			mu.Lock()
			defer mu.Unlock()
			resets = append(resets, stream)
		},
	})
	natstest.EventStream(t, r.pub)
	natstest.TelemetryStream(t, r.pub)
	r.run()
	metrics := subject.Metrics("srv.1")
	_, s := r.client(position{}, "herald.evt.*.machines.*.*", metrics)
	if n := r.hub.Subscriptions(); n != 2 {
		t.Fatalf("%d NATS subscriptions, want 2", n)
	}
	// Two streams republish independently: their messages are ordered within a stream
	// only, so the event is awaited before the samples.
	r.publish("herald.evt.global.machines.save.m1", "{}")
	s.waitFrames(t, 1)
	r.publish(metrics, "{}")
	r.publish(metrics, "{}")
	got := s.waitFrames(t, 3)
	want := []string{"herald.evt.global.machines.save.m1@ev:1", metrics + "@tm:1", metrics + "@tm:2"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v, want %v", got, want)
	}
	js, err := jetstream.New(r.pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(t.Context(), subject.TelemetryStream); err != nil {
		t.Fatal(err)
	}
	natstest.TelemetryStream(t, r.pub)
	r.publish(metrics, "{}")
	s.waitFrames(t, 4)
	mu.Lock()
	defer mu.Unlock()
	if len(resets) != 1 || resets[0] != subject.TelemetryStream {
		t.Fatalf("resets %v, want the telemetry stream's alone", resets)
	}
}
