package eventpub_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventpub"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
)

func TestPublishStoresCanonicalEvent(t *testing.T) {
	ns := natstest.RunServer(t)
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{subject.EventsWildcard}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{Type: "connections", Action: "create", Key: "user:a.b", Principal: "user:a.b"}
	seq, err := eventpub.Publish(ctx, js, ev, jetstream.WithExpectStream("T"))
	if err != nil || seq != 1 {
		t.Fatalf("Publish = %d, %v; want 1, nil", seq, err)
	}
	msg, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != subject.ForEvent(ev) {
		t.Errorf("subject %q, want %q", msg.Subject, subject.ForEvent(ev))
	}
	var got event.Event
	if err := json.Unmarshal(msg.Data, &got); err != nil || got.Scope != event.ScopeGlobal || string(got.Object) != "null" || got.Time.IsZero() {
		t.Errorf("stored %s (%v): want normalized event", msg.Data, err)
	}

	if _, err := eventpub.Publish(ctx, js, &event.Event{Action: "x", Key: "y"}); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("invalid event: err %v, want ErrInvalid", err)
	}
	if _, err := eventpub.Publish(ctx, js, nil); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("nil event: err %v, want ErrInvalid", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if _, err := eventpub.Publish(short, js, &event.Event{Type: "a", Action: "b", Key: "c"}, jetstream.WithExpectStream("NOPE")); !errors.Is(err, eventpub.ErrUnavailable) {
		t.Errorf("wrong stream: err %v, want ErrUnavailable", err)
	}
}
