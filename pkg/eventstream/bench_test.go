package eventstream_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
)

// BenchmarkPublishR3 measures what one publisher gets through an R3 stream on a three-node
// cluster: with every write synced to disk before its acknowledgement (sync_interval: always)
// or synced every two minutes (NATS's default); without RePublish, with it and nobody
// listening, and with it and an edge-like subscriber; one publish at a time (each waits for
// its acknowledgement, as one gRPC Publish does) or a window of 64 in flight (many callers
// at once). Run it alone, briefly:
//
//	go test -run '^$' -bench PublishR3 -benchtime 2s ./eventstream/
func BenchmarkPublishR3(b *testing.B) {
	payload := []byte(`{"Time":"2026-01-02T03:04:05Z","Type":"machines","Action":"save","Key":"m-0001",` +
		`"Scope":"global","Principal":"bench","Object":{"Name":"m-0001","Address":"10.0.0.1","Runnable":true}}`)
	for _, sync := range []bool{true, false} {
		for _, rp := range []string{"none", "republish", "republish+sub"} {
			for _, window := range []int{1, 64} {
				name := fmt.Sprintf("sync=%v/%s/window=%d", map[bool]string{true: "always", false: "2m"}[sync], rp, window)
				b.Run(name, func(b *testing.B) { benchPublish(b, sync, rp, window, payload) })
			}
		}
	}
}

func benchPublish(b *testing.B, syncAlways bool, rp string, window int, payload []byte) {
	c := natstest.RunCluster(b, 3, func(o *server.Options) { o.SyncAlways = syncAlways })
	js, err := jetstream.New(natstest.Connect(b, c.Server(0)))
	if err != nil {
		b.Fatal(err)
	}
	cfg := jetstream.StreamConfig{Name: subject.EventStream, Subjects: []string{subject.EventsWildcard}, Replicas: 3}
	if rp != "none" {
		cfg.RePublish = &jetstream.RePublish{Source: subject.EventsWildcard, Destination: subject.RepublishedWildcard}
	}
	if _, err := js.CreateStream(b.Context(), cfg); err != nil {
		b.Fatal(err)
	}
	if rp == "republish+sub" {
		sub := natstest.Connect(b, c.Server(1))
		if _, err := sub.Subscribe(subject.RepublishedWildcard, func(*nats.Msg) {}); err != nil {
			b.Fatal(err)
		}
		if err := sub.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	publishFor(b, js, "herald.evt.global.machines.save.m-0001", payload, window, "events/s")
}

// publishFor publishes payload on subj b.N times, one at a time (window 1) or with window in
// flight, and reports the rate in unit.
func publishFor(b *testing.B, js jetstream.JetStream, subj string, payload []byte, window int, unit string) {
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	if window == 1 {
		for range b.N {
			if _, err := js.Publish(b.Context(), subj, payload); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		pending := make(chan jetstream.PubAckFuture, window)
		wait := func(f jetstream.PubAckFuture) {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			case <-time.After(10 * time.Second):
				b.Fatal("no acknowledgement within 10s")
			}
		}
		for range b.N {
			if len(pending) == cap(pending) {
				wait(<-pending)
			}
			f, err := js.PublishAsync(subj, payload)
			if err != nil {
				b.Fatal(err)
			}
			pending <- f
		}
		for len(pending) > 0 {
			wait(<-pending)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}

// BenchmarkTelemetryR3 measures samples/s into HERALD_TELEMETRY as ingest creates it
// (eventstream.TelemetryConfig, R3, republished) on a three-node cluster with every write
// synced before its acknowledgement (sync_interval: always), an edge-like subscriber on the
// republished copy, and a sample of a server with a few dozen processes (about 2 KB): one at a
// time, and with 256 in flight as ingest's asynchronous publisher keeps them. Run it alone:
//
//	go test -run '^$' -bench TelemetryR3 -benchtime 2s ./eventstream/
func BenchmarkTelemetryR3(b *testing.B) {
	var sample strings.Builder
	sample.WriteString(`{"server_id":"srv-0001","timestamp":"2026-01-02T03:04:05Z","cpu_percent":12.5,"memory_percent":40.1,"processes":[`)
	for i := range 30 {
		if i > 0 {
			sample.WriteByte(',')
		}
		fmt.Fprintf(&sample, `{"pid":%d,"name":"worker-%02d","cpu_percent":0.4,"memory_percent":1.2,"status":"sleeping"}`, 1000+i, i)
	}
	sample.WriteString(`]}`)
	for _, window := range []int{1, 256} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			c := natstest.RunCluster(b, 3, func(o *server.Options) { o.SyncAlways = true })
			js, err := jetstream.New(natstest.Connect(b, c.Server(0)))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.CreateStream(b.Context(), eventstream.TelemetryConfig(time.Hour, 0, 3)); err != nil {
				b.Fatal(err)
			}
			sub := natstest.Connect(b, c.Server(1))
			if _, err := sub.Subscribe("herald.rp.>", func(*nats.Msg) {}); err != nil {
				b.Fatal(err)
			}
			if err := sub.Flush(); err != nil {
				b.Fatal(err)
			}
			publishFor(b, js, subject.Metrics("srv-0001"), []byte(sample.String()), window, "samples/s")
		})
	}
}
