package natstest_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
)

func TestRunServerAcceptsClientsAndJetStream(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	nc := natstest.Connect(t, s)
	sub, err := nc.SubscribeSync("ping")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("ping", []byte("pong")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "pong" {
		t.Fatalf("got %q, want pong", msg.Data)
	}
}

func TestRunClusterMessageCrossesServers(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	servers := c.Servers()
	if len(servers) != 3 {
		t.Fatalf("got %d servers, want 3", len(servers))
	}
	sub := natstest.Connect(t, servers[0])
	pub := natstest.Connect(t, servers[2])
	s, err := sub.SubscribeSync("cross")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	// Interest propagates over routes asynchronously: wait until the
	// publisher's server knows about the subscription.
	testutil.Eventually(t, 5*time.Second, func() error {
		if !servers[2].GlobalAccount().SubscriptionInterest("cross") {
			return errors.New("no interest in cross on server 2 yet")
		}
		return nil
	})
	if err := pub.Publish("cross", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := s.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("message did not cross the cluster: %v", err)
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("got %q, want hello", msg.Data)
	}
}

// A replicated stream keeps taking writes with one node down, and the node
// that comes back on its ports with its store catches up: with a second
// node down after it, the stream still has every message.
func TestRunClusterRestartKeepsStoreAndPorts(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	url0 := c.Server(0).ClientURL()
	nc := natstest.Connect(t, c.Server(2), nats.MaxReconnects(-1))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			// A publish may fail while the stream elects a new leader:
			// retry it, bounded, with a message id so it lands once.
			testutil.Eventually(t, 20*time.Second, func() error {
				_, err := js.Publish(ctx, "r.x", fmt.Appendf(nil, "%d", i), jetstream.WithMsgID(fmt.Sprint(i)))
				return err
			})
		}
	}
	publish(0, 10)
	c.Shutdown(0)
	if c.Server(0) != nil || len(c.Servers()) != 2 {
		t.Fatal("node 0 still listed after Shutdown")
	}
	publish(10, 20)
	s0 := c.Restart(0)
	if s0.ClientURL() != url0 {
		t.Fatalf("restarted on %s, want %s", s0.ClientURL(), url0)
	}
	// Node 0 must have caught up before node 1 goes, or the quorum of
	// 0 and 2 could lack what only 1 and 2 stored.
	testutil.Eventually(t, 20*time.Second, func() error {
		if !s0.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, "R") {
			return errors.New("restarted node not current with stream R")
		}
		return nil
	})
	c.Shutdown(1)
	var info *jetstream.StreamInfo
	testutil.Eventually(t, 20*time.Second, func() error {
		st, err := js.Stream(ctx, "R")
		if err != nil {
			return err
		}
		if info, err = st.Info(ctx); err != nil {
			return err
		}
		if info.State.Msgs != 20 {
			return fmt.Errorf("stream has %d messages, want 20", info.State.Msgs)
		}
		return nil
	})
	if info.State.FirstSeq != 1 || info.State.LastSeq != 20 {
		t.Fatalf("stream holds %d..%d, want 1..20", info.State.FirstSeq, info.State.LastSeq)
	}
}
