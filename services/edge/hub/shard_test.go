package hub_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/hub"
)

// TestOrderPerClientAcrossShards: clients spread over four shards, some on two filters and
// some on one, each see the messages meant for them exactly once and in the order they were
// published, whichever filter each came through.
func TestOrderPerClientAcrossShards(t *testing.T) {
	r := newRig(t, hub.Config{Shards: 4, ShardQueue: 8})
	r.run()
	var both, onlyB []*fakeSink
	for range 8 {
		_, s := r.client(echo{}, "a.*", "b.*")
		both = append(both, s)
		_, s = r.client(echo{}, "b.*")
		onlyB = append(onlyB, s)
	}
	const n = 400
	var want, wantB []string
	for i := range n {
		subj := "a.x"
		if i%3 == 0 {
			subj = "b.x"
		}
		if err := r.pub.Publish(subj, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		f := fmt.Sprintf("%s=%d", subj, i)
		want = append(want, f)
		if subj == "b.x" {
			wantB = append(wantB, f)
		}
	}
	if err := r.pub.Flush(); err != nil {
		t.Fatal(err)
	}
	check := func(sinks []*fakeSink, want []string) {
		t.Helper()
		for k, s := range sinks {
			got := s.waitFrames(t, len(want))
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("client %d: frames out of order or repeated:\n got %q\nwant %q", k, got, want)
			}
		}
	}
	check(both, want)
	check(onlyB, wantB)
}

// gateSink blocks in its first Deliver until open is closed: a client whose shard is stuck.
type gateSink struct {
	fakeSink
	open    chan struct{}
	entered chan struct{}
	first   bool
}

func (s *gateSink) Deliver(frame []byte, seq uint64) bool {
	if !s.first {
		s.first = true
		close(s.entered)
		<-s.open
	}
	return s.fakeSink.Deliver(frame, seq)
}

// TestStuckShardIsBounded: one shard cannot go on. Its queue fills, then the dispatcher waits,
// then the inbound channel fills and NATS drops: what the edge holds stays within the
// configured bounds, and once the shard moves again every client of the filter, on either
// shard, is closed with 4000 and the missed events are counted as lost.
func TestStuckShardIsBounded(t *testing.T) {
	const inbound, queue, published = 4, 2, 60
	r := newRig(t, hub.Config{Shards: 2, ShardQueue: queue, Inbound: inbound})
	stuck := &gateSink{open: make(chan struct{}), entered: make(chan struct{})}
	c, err := r.hub.NewClient(stuck, echo{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.hub.Subscribe(t.Context(), c, []string{"hot"}); err != nil {
		t.Fatal(err)
	}
	_, other := r.client(echo{}, "hot") // the next client goes to the other shard
	r.run()
	r.publish("hot", "first")
	select {
	case <-stuck.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the stuck client never got its first message")
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if f, _ := other.got(); len(f) != 1 {
			return errors.New("the other shard did not deliver the first message")
		}
		return nil
	})
	for i := range published {
		if err := r.pub.Publish("hot", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.pub.Flush(); err != nil {
		t.Fatal(err)
	}
	r.waitRead(published + 1)
	close(stuck.open)
	for name, s := range map[string]*fakeSink{"stuck": &stuck.fakeSink, "other": other} {
		testutil.Eventually(t, 5*time.Second, func() error {
			if _, closed := s.got(); closed == nil {
				return fmt.Errorf("%s client not closed after NATS dropped its events", name)
			}
			return nil
		})
		frames, closed := s.got()
		if closed.Code != wsconn.DisconnectSlow.Code || !strings.Contains(closed.Reason, "events dropped") {
			t.Fatalf("%s client closed %+v, want %d and the number dropped", name, closed, wsconn.DisconnectSlow.Code)
		}
		// Held at most: the message in hand, the stuck shard's queue, the one the dispatcher
		// waits to hand over, the inbound channel; everything else was dropped, not kept.
		if bound := 1 + queue + 1 + inbound; len(frames) > bound {
			t.Fatalf("%s client got %d frames while its shard was stuck, more than the %d the bounds allow", name, len(frames), bound)
		}
	}
	// How many NATS dropped depends on how far the dispatcher got before the shard stopped it
	// (under the race detector it may fall behind at once), but each drop counts for both.
	testutil.Eventually(t, 5*time.Second, func() error {
		if lost := r.hub.Lost(); lost < 2 || lost%2 != 0 {
			return fmt.Errorf("lost %d, want the dropped events times both clients", lost)
		}
		return nil
	})
	if r.hub.Delivered() == 0 {
		t.Fatal("nothing counted as delivered")
	}
}
