package natstest_test

import (
	"errors"
	"testing"
	"time"

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
	servers := natstest.RunCluster(t, 3)
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
