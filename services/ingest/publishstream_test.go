package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/ingest"
)

// streamAll sends reqs on one PublishStream while reading its answers, then closes the
// sending side and returns every answer.
func streamAll(t testing.TB, client heraldv1.EventServiceClient, reqs []*heraldv1.PublishStreamRequest) []*heraldv1.PublishStreamResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stream, err := client.PublishStream(ctx)
	if err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
	sent := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			if err := stream.Send(r); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	out := make([]*heraldv1.PublishStreamResponse, 0, len(reqs))
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv after %d answers: %v", len(out), err)
		}
		out = append(out, resp)
	}
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	return out
}

func machineEvent(i int) *heraldv1.Event {
	return &heraldv1.Event{Type: "machines", Action: "save", Key: fmt.Sprintf("m%d", i)}
}

// Every streamed event is answered once, in order: stored ones with increasing sequences,
// refused ones with the status Publish would give, and the stream goes on past them.
func TestPublishStreamAnswersEachEventInOrder(t *testing.T) {
	t.Parallel()
	s := startStack(t, ingest.Config{})
	const n = 3000 // more than one window of unanswered events
	reqs := make([]*heraldv1.PublishStreamRequest, n)
	for i := range reqs {
		reqs[i] = &heraldv1.PublishStreamRequest{Event: machineEvent(i)}
	}
	reqs[10].Event.Type = ""         // invalid
	reqs[20].Event.Type = "profiles" // not permitted below
	reqs[30].Event = nil             // missing
	resps := streamAll(t, s.clientWith(t, "events.post.machines"), reqs)
	if len(resps) != n {
		t.Fatalf("%d answers for %d events", len(resps), n)
	}
	var last uint64
	for i, r := range resps {
		if r.GetIndex() != uint64(i) {
			t.Fatalf("answer %d has index %d", i, r.GetIndex())
		}
		want := map[int]codes.Code{10: codes.InvalidArgument, 20: codes.PermissionDenied, 30: codes.InvalidArgument}
		if code, refused := want[i]; refused {
			if got := codes.Code(r.GetError().GetCode()); got != code || r.GetError().GetMessage() == "" {
				t.Fatalf("event %d: %v, want %s with a message", i, r.GetOutcome(), code)
			}
			continue
		}
		ack := r.GetAck()
		if ack == nil || ack.GetSequence() <= last || ack.GetId() == "" || ack.GetDuplicate() {
			t.Fatalf("event %d: %v after sequence %d, want a new, higher sequence with an id", i, r.GetOutcome(), last)
		}
		last = ack.GetSequence()
	}
	if info := streamInfo(t, s); info.State.Msgs != n-3 {
		t.Fatalf("stream holds %d events, want %d", info.State.Msgs, n-3)
	}
}

func streamInfo(t testing.TB, s *stack) *jetstream.StreamInfo {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, s.ns))
	if err != nil {
		t.Fatal(err)
	}
	str, err := js.Stream(t.Context(), subject.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// A caller that retries a publish with the same id (after a timeout, say) gets the original
// sequence back, and the event is stored once, so whatever reads the stream gets it once;
// unary and streamed publishes share the same ids.
func TestPublishRetriedWithSameIDIsStoredAndDeliveredOnce(t *testing.T) {
	t.Parallel()
	s := startStack(t, ingest.Config{})
	ev := machineEvent(1)
	ev.Id = "job-42-step-1"
	first, err := s.client.Publish(t.Context(), &heraldv1.PublishRequest{Event: ev})
	if err != nil || first.GetId() != ev.Id || first.GetDuplicate() {
		t.Fatalf("first publish: %v, %v; want id %q, not a duplicate", first, err, ev.Id)
	}
	again, err := s.client.Publish(t.Context(), &heraldv1.PublishRequest{Event: ev})
	if err != nil || again.GetSequence() != first.GetSequence() || !again.GetDuplicate() {
		t.Fatalf("retry: %v, %v; want sequence %d marked duplicate", again, err, first.GetSequence())
	}
	streamed := streamAll(t, s.client, []*heraldv1.PublishStreamRequest{{Event: ev}, {Event: machineEvent(2)}})
	if a := streamed[0].GetAck(); a.GetSequence() != first.GetSequence() || !a.GetDuplicate() {
		t.Fatalf("streamed retry: %v; want sequence %d marked duplicate", streamed[0], first.GetSequence())
	}
	// Read the whole stream back: the retried event once, then the second streamed event.
	js, err := jetstream.New(natstest.Connect(t, s.ns))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(t.Context(), subject.EventStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for m := range batch.Messages() {
		ids = append(ids, m.Headers().Get(subject.MsgIDHeader))
	}
	if want := []string{ev.Id, streamed[1].GetAck().GetId()}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("the stream delivers ids %q, want %q", ids, want)
	}
	bad := machineEvent(3)
	bad.Id = "has space"
	if _, err := s.client.Publish(t.Context(), &heraldv1.PublishRequest{Event: bad}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("id with a space: %v, want InvalidArgument", err)
	}
}

// A stream authenticates once and ends with Unauthenticated once its token has expired; every
// event received before is still answered.
func TestPublishStreamEndsWhenItsTokenExpires(t *testing.T) {
	t.Parallel()
	s := startStack(t, ingest.Config{})
	shortLived := token.NewIssuer(s.priv, 2*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	stream, err := s.clientIssued(t, shortLived, "*.*.*").PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				answered <- err
				return
			}
		}
	}()
	// Keep publishing, a bounded number of times, until the server ends the stream.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < 400; i++ {
		select {
		case err := <-answered:
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("stream ended with %v, want Unauthenticated", err)
			}
			return
		case <-tick.C:
			_ = stream.Send(&heraldv1.PublishStreamRequest{Event: machineEvent(i)})
		}
	}
	t.Fatal("stream still open long after its token expired")
}
