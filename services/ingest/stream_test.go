package ingest_test

import (
	"encoding/json"
	"fmt"
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
