package ingest_test

import (
	"context"
	"errors"
	"io"
	"testing"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/ingest"
)

// The publish path from one caller through gRPC into a real JetStream (embedded nats-server,
// file storage), one event acknowledged per op:
//
//	cd services/ingest && go test -run '^$' -bench 'BenchmarkPublish' -benchtime 20000x .
//
// Unary waits for each acknowledgement; the stream pipelines them.
func BenchmarkPublishUnary(b *testing.B) {
	s := startStack(b, ingest.Config{})
	req := &heraldv1.PublishRequest{Event: machineEvent(1)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.client.Publish(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkPublishStream(b *testing.B) {
	s := startStack(b, ingest.Config{})
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	stream, err := s.client.PublishStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	req := &heraldv1.PublishStreamRequest{Event: machineEvent(1)}
	b.ReportAllocs()
	b.ResetTimer()
	sent := make(chan error, 1)
	go func() {
		for range b.N {
			if err := stream.Send(req); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	acked := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if resp.GetAck() == nil {
			b.Fatalf("event %d: %v", resp.GetIndex(), resp.GetError())
		}
		acked++
	}
	b.StopTimer()
	if err := <-sent; err != nil {
		b.Fatal(err)
	}
	if acked != b.N {
		b.Fatalf("%d acknowledged of %d", acked, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
