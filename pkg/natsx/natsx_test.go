package natsx_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/natsx"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestEmbeddedInProcessWithJetStream(t *testing.T) {
	t.Parallel()
	var logs testutil.Buffer
	s, err := natsx.Embedded(natsx.EmbeddedConfig{
		StoreDir: t.TempDir(),
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsx.Shutdown(s) })
	if s.Addr() != nil {
		t.Fatalf("server listens on %v without Listen", s.Addr())
	}
	if !strings.Contains(logs.String(), "component=nats-server") {
		t.Fatalf("server logs not routed to slog: %q", logs.String())
	}

	nc, err := natsx.ConnectInProcess(s, "test", discard())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("JetStream unusable: %v", err)
	}
	ack, err := js.Publish(ctx, "t.x", []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Sequence != 1 {
		t.Fatalf("ack sequence %d, want 1", ack.Sequence)
	}
}

func TestEmbeddedListenUsesOwnPort(t *testing.T) {
	t.Parallel()
	s, err := natsx.Embedded(natsx.EmbeddedConfig{StoreDir: t.TempDir(), Listen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsx.Shutdown(s) })
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("Addr() = %v, want a TCP address", s.Addr())
	}
	if !addr.IP.IsLoopback() || addr.Port == 4222 || addr.Port == 0 {
		t.Fatalf("listening on %v, want 127.0.0.1 on a port of its own", addr)
	}

	nc, err := natsx.Connect(t.Context(), s.ClientURL(), "test", discard())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := natsx.Drain(nc, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !nc.IsClosed() {
		t.Fatal("connection not closed after Drain")
	}
	if err := natsx.Drain(nc, time.Second); err != nil {
		t.Fatalf("second Drain: %v", err)
	}
}

func TestConnectGivesUpWhenContextEnds(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	nc, err := natsx.Connect(ctx, url, "test", discard())
	if err == nil {
		nc.Close()
		t.Fatal("Connect succeeded with no server")
	}
	if !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v, want it to name the context deadline", err)
	}
}

func TestConnectReconnectsAndLogs(t *testing.T) {
	t.Parallel()
	s := natstest.RunServer(t)
	var logs testutil.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	nc, err := natsx.Connect(t.Context(), s.ClientURL(), "test", log, nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// Closing the client's connection from the server side forces a
	// reconnect, which must be logged.
	conns, err := s.Connz(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns.Conns) != 1 {
		t.Fatalf("server has %d clients, want 1", len(conns.Conns))
	}
	if err := s.DisconnectClientByID(conns.Conns[0].Cid); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "nats reconnected") {
			return fmt.Errorf("no reconnect logged; logs: %s", logs.String())
		}
		return nil
	})
	if !nc.IsConnected() {
		t.Fatal("not connected after the reconnect was logged")
	}
}

func TestConfigFlagsAndValidate(t *testing.T) {
	t.Parallel()
	var c natsx.Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if c.URL != natsx.DefaultURL {
		t.Fatalf("default URL %q", c.URL)
	}
	if err := fs.Parse([]string{"-nats.url", "nats://a:1,nats://b:2"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(%q) = %v", c.URL, err)
	}
	for _, bad := range []string{"", "  ", "nats://a:1,", "::"} {
		if err := (natsx.Config{URL: bad}).Validate(); err == nil {
			t.Errorf("Validate(%q) = nil, want an error", bad)
		}
	}
}

// Given every node of a cluster, a connection whose node goes reconnects to
// another and carries on: its subscription is restored there and reached
// from the rest of the cluster.
func TestConnectRidesOutLossOfOneNode(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	var logs testutil.Buffer
	nc, err := natsx.Connect(t.Context(), c.ClientURLs(0), "test", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("ride")
	if err != nil {
		t.Fatal(err)
	}
	lost := -1
	for i := range 3 {
		if nc.ConnectedUrl() == c.ClientURL(i) {
			lost = i
		}
	}
	if lost < 0 {
		t.Fatalf("connected to %s, not one of %s", nc.ConnectedUrl(), c.ClientURLs(0))
	}
	c.Shutdown(lost)
	testutil.Eventually(t, 20*time.Second, func() error {
		if !nc.IsConnected() || nc.ConnectedUrl() == c.ClientURL(lost) {
			return fmt.Errorf("not reconnected to another node (status %v)", nc.Status())
		}
		// The client runs its handlers on a goroutine of its own, a moment later.
		if !strings.Contains(logs.String(), "nats reconnected") {
			return fmt.Errorf("reconnect not logged: %s", logs.String())
		}
		return nil
	})
	pub := natstest.Connect(t, c.Server((lost+1)%3))
	// Resent subscriptions cross the routes asynchronously: publish until one arrives.
	testutil.Eventually(t, 10*time.Second, func() error {
		if err := pub.Publish("ride", []byte("on")); err != nil {
			return err
		}
		if _, err := sub.NextMsg(100 * time.Millisecond); err != nil {
			return fmt.Errorf("nothing received after the reconnect: %w", err)
		}
		return nil
	})
}
