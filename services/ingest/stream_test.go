package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/services/ingest"
)

// On a three-node cluster with ingest.stream-replicas 3 the stream has three copies, and every
// event it stores is republished with the sequence Publish returned, on the republished form
// of the event's subject.
func TestStreamReplicatedAndRepublishedOnCluster(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	nc := natstest.Connect(t, c.Server(0), nats.MaxReconnects(-1))
	svc, err := ingest.New(ingest.Config{StreamReplicas: 3}, ingest.Deps{NC: nc})
	if err != nil {
		t.Fatal(err)
	}
	runUntilReady(t, svc, 30*time.Second)

	js, err := jetstream.New(natstest.Connect(t, c.Server(1)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), ingest.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream replicas %d, cluster %+v; want 3 copies", info.Config.Replicas, info.Cluster)
	}

	sub, err := natstest.Connect(t, c.Server(2)).SubscribeSync(subject.RepublishedWildcard)
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{Type: "machines", Action: "save", Key: "m1", Object: json.RawMessage(`{"n":1}`)}
	ev.Normalize(time.Now())
	rp, err := subject.ToRepublished(subject.ForEvent(ev))
	if err != nil {
		t.Fatal(err)
	}
	// Interest crosses the routes asynchronously; the stream leader republishes only to
	// subscribers its server knows of.
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, s := range c.Servers() {
			if !s.GlobalAccount().SubscriptionInterest(rp) {
				return fmt.Errorf("server %s has no interest in %s yet", s.Name(), rp)
			}
		}
		return nil
	})
	for range 3 {
		seq, err := svc.Publish(t.Context(), ev)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got, err := eventstream.Sequence(msg.Header)
		if err != nil || got != seq || msg.Subject != rp {
			t.Fatalf("republished %s with sequence %d (%v); want %s with %d", msg.Subject, got, err, rp, seq)
		}
		var back event.Event
		if err := json.Unmarshal(msg.Data, &back); err != nil || back.Key != ev.Key {
			t.Fatalf("republished payload %s (%v)", msg.Data, err)
		}
	}
}

// An ingest that starts while two nodes of three are down finds no JetStream quorum: it
// waits for the cluster instead of failing, and is ready once a second node is back (the R3
// stream is then created with its third copy to follow). Replicas on a single server can
// never work and fail at once.
func TestStreamWaitsForClusterNodes(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	c.Shutdown(1)
	c.Shutdown(2)
	nc := natstest.Connect(t, c.Server(0), nats.MaxReconnects(-1))
	var retries atomic.Int32
	var lastErr atomic.Value
	log := slog.New(countingHandler{msg: "event stream not ready, retrying", n: &retries, last: &lastErr})
	svc, err := ingest.New(ingest.Config{StreamReplicas: 3, PublishTimeout: time.Second}, ingest.Deps{NC: nc, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	// Not ready without a quorum, and still running, having retried at least twice.
	testutil.Eventually(t, 20*time.Second, func() error {
		if n := retries.Load(); n < 2 {
			return fmt.Errorf("%d retries logged", n)
		}
		return nil
	})
	select {
	case <-svc.Ready():
		t.Fatal("ready with two nodes of three down")
	case err := <-runErr:
		t.Fatalf("Run ended while the cluster had no quorum: %v", err)
	default:
	}
	t.Logf("without a quorum: %d retries, last error %v", retries.Load(), lastErr.Load())
	// Both nodes come back: a stream of three replicas is placed only when three peers are
	// up (with two, placement may or may not pick the missing one, which made this flaky).
	c.Restart(1)
	c.Restart(2)
	select {
	case <-svc.Ready():
	case err := <-runErr:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready 30s after the nodes came back")
	}

	single := natstest.RunServer(t)
	bad, err := ingest.New(ingest.Config{StreamReplicas: 3}, ingest.Deps{NC: natstest.Connect(t, single)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithTimeout(t.Context(), 20*time.Second)
	defer stop()
	if err := bad.Run(runCtx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run with replicas 3 on one server = %v, want a configuration error at once", err)
	}
}

// countingHandler counts the log records with message msg and drops every record.
type countingHandler struct {
	msg  string
	n    *atomic.Int32
	last *atomic.Value // the err attribute of the last counted record
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h countingHandler) WithGroup(string) slog.Handler            { return h }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				h.last.Store(a.Value.String())
			}
			return true
		})
	}
	return nil
}
