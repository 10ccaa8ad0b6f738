package eventstream_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
)

func TestParsePosition(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want eventstream.Position
	}{
		{"abc:0", eventstream.Position{Epoch: "abc", Seq: 0}},
		{"18e2x0k9a1b2c:42", eventstream.Position{Epoch: "18e2x0k9a1b2c", Seq: 42}},
		{"z:18446744073709551615", eventstream.Position{Epoch: "z", Seq: 1<<64 - 1}},
	} {
		got, err := eventstream.ParsePosition(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
	for _, bad := range []string{
		"", ":", "abc", "abc:", ":1", "ABC:1", "a-b:1", "a:b:1", "a:-1", "a:+1", "a:01", "a:1 ",
		"a:18446744073709551616", "a:0x1", strings.Repeat("a", 17) + ":1", "é:1",
	} {
		if got, err := eventstream.ParsePosition(bad); !errors.Is(err, eventstream.ErrBadPosition) {
			t.Errorf("ParsePosition(%q) = %+v, %v; want ErrBadPosition", bad, got, err)
		}
	}
}

func FuzzPositionRoundTrip(f *testing.F) {
	f.Add("abc:1")
	f.Add("a:01")
	f.Add("zz:18446744073709551615")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := eventstream.ParsePosition(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePosition(%q).String() = %q: a position has one spelling", s, p.String())
		}
		again, err := eventstream.ParsePosition(eventstream.FormatPosition(p.Epoch, p.Seq))
		if err != nil || again != p {
			t.Fatalf("round trip of %+v gave %+v, %v", p, again, err)
		}
	})
}

func TestSequenceRejectsOtherStreams(t *testing.T) {
	t.Parallel()
	for _, h := range []nats.Header{
		{},
		{jetstream.StreamHeader: {"OTHER"}, jetstream.SequenceHeader: {"1"}},
		{jetstream.StreamHeader: {subject.EventStream}},
		{jetstream.StreamHeader: {subject.EventStream}, jetstream.SequenceHeader: {"0"}},
		{jetstream.StreamHeader: {subject.EventStream}, jetstream.SequenceHeader: {"x"}},
	} {
		if seq, err := eventstream.Sequence(h); !errors.Is(err, eventstream.ErrBadPosition) {
			t.Errorf("Sequence(%v) = %d, %v; want ErrBadPosition", h, seq, err)
		}
	}
}

// On a three-node cluster: the stream's epoch is the same whichever node answers and after
// its leader is restarted, it changes when the stream is created again, and each republished
// event carries the sequence it was stored at.
func TestEpochAndRepublishedSequenceOnCluster(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	ctx := t.Context()
	streams := func(i int) jetstream.JetStream {
		js, err := jetstream.New(natstest.Connect(t, c.Server(i), nats.MaxReconnects(-1)))
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	js := streams(0)
	cfg := jetstream.StreamConfig{
		Name: subject.EventStream, Subjects: []string{subject.EventsWildcard}, Replicas: 3,
		RePublish: &jetstream.RePublish{Source: subject.EventsWildcard, Destination: subject.RepublishedWildcard},
	}
	// Placing three replicas needs three current peers; a node just (re)started may not be yet
	// ("no suitable peers for placement"), so creation is retried, bounded.
	create := func() {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, func() error {
			_, err := js.CreateStream(ctx, cfg)
			return err
		})
	}
	create()
	epoch, err := eventstream.Epoch(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstream.ParsePosition(eventstream.FormatPosition(epoch, 1)); err != nil {
		t.Fatalf("epoch %q does not make a position: %v", epoch, err)
	}
	other := streams(2)
	if got, err := eventstream.Epoch(ctx, other); err != nil || got != epoch {
		t.Fatalf("epoch via node 2 = %q, %v; want %q", got, err, epoch)
	}

	nc := natstest.Connect(t, c.Server(1))
	sub, err := nc.SubscribeSync(subject.RepublishedWildcard)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	evSubj := "herald.evt.global.machines.save.m1"
	for i := range 3 {
		ack, err := js.Publish(ctx, evSubj, fmt.Appendf(nil, "%d", i))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := eventstream.Sequence(msg.Header)
		if err != nil || seq != ack.Sequence {
			t.Fatalf("republished sequence %d, %v; acknowledged %d", seq, err, ack.Sequence)
		}
		if from, err := subject.FromRepublished(msg.Subject); err != nil || from != evSubj {
			t.Fatalf("republished on %q (%q, %v), want it to map back to %q", msg.Subject, from, err, evSubj)
		}
	}

	// Restart the stream's leader: the new leader reports the same epoch.
	leader := -1
	for i, s := range c.Servers() {
		if s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, subject.EventStream) {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	c.Shutdown(leader)
	c.Restart(leader)
	testutil.Eventually(t, 20*time.Second, func() error {
		got, err := eventstream.Epoch(ctx, other)
		if err != nil {
			return err
		}
		if got != epoch {
			t.Fatalf("epoch after the leader's restart %q, want %q", got, epoch)
		}
		return nil
	})

	if err := js.DeleteStream(ctx, subject.EventStream); err != nil {
		t.Fatal(err)
	}
	create()
	if got, err := eventstream.Epoch(ctx, js); err != nil || got == epoch {
		t.Fatalf("epoch of the recreated stream %q, %v; want a new one (old %q)", got, err, epoch)
	}
}

// TestTelemetryStream checks HERALD_TELEMETRY as ingest creates it: samples, alerts and log
// entries published on their plain subjects are stored, republished where the edges listen
// with their sequence in this stream, and the event stream's sequence reader refuses them.
func TestTelemetryStream(t *testing.T) {
	t.Parallel()
	ns := natstest.RunServer(t)
	nc := natstest.Connect(t, ns)
	natstest.EventStream(t, nc)
	epoch := natstest.TelemetryStream(t, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := eventstream.EpochIn(t.Context(), js, subject.TelemetryStream); err != nil || got != epoch {
		t.Fatalf("epoch %q, %v; want %q", got, err, epoch)
	}
	sub, err := nc.SubscribeSync("herald.rp.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{subject.Metrics("srv.1"), subject.Alerts("srv.1"), subject.Logs("srv.1")} {
		ack, err := js.Publish(t.Context(), s, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Stream != subject.TelemetryStream || ack.Sequence != uint64(i+1) {
			t.Fatalf("%s stored in %s at %d, want %s at %d", s, ack.Stream, ack.Sequence, subject.TelemetryStream, i+1)
		}
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if seq, err := eventstream.SequenceIn(msg.Header, subject.TelemetryStream); err != nil || seq != ack.Sequence {
			t.Fatalf("republished sequence %d, %v; want %d", seq, err, ack.Sequence)
		}
		if _, err := eventstream.Sequence(msg.Header); !errors.Is(err, eventstream.ErrBadPosition) {
			t.Fatalf("the event stream's Sequence took a telemetry message: %v", err)
		}
		if from, err := subject.FromRepublished(msg.Subject); err != nil || from != s {
			t.Fatalf("republished on %q (%q, %v), want it to map back to %q", msg.Subject, from, err, s)
		}
	}
}
