package herald_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// TestRetriedPublishDeliveredOnce: a publish retried with the same id (a caller whose first
// call timed out) is stored once, answered with the first sequence, and delivered once: edges
// read what the stream stored, so JetStream's duplicate check covers live delivery too.
func TestRetriedPublishDeliveredOnce(t *testing.T) {
	s, _ := startStack(t)
	tok := adminToken(t, s)
	ws := dialDRP(t, s.HTTPAddr(), "token="+url.QueryEscape(tok))
	expectAck(t, ws, "register", "dup.*.*")
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pub := heraldv1.NewEventServiceClient(cc)
	send := func(key, id string) *heraldv1.PublishResponse {
		t.Helper()
		resp, err := pub.Publish(bearer(t.Context(), tok), &heraldv1.PublishRequest{Event: &heraldv1.Event{
			Type: "dup", Action: "save", Key: key, Id: id}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := send("once", "retry-me")
	again := send("once", "retry-me")
	if again.GetSequence() != first.GetSequence() || !again.GetDuplicate() {
		t.Fatalf("retry answered sequence %d duplicate=%v, want %d and true", again.GetSequence(), again.GetDuplicate(), first.GetSequence())
	}
	send("sentinel", "")
	var keys []string
	for len(keys) < 2 {
		var f struct{ Type, Key string }
		if err := json.Unmarshal(readRaw(t, ws), &f); err != nil {
			t.Fatal(err)
		}
		if f.Type == "dup" {
			keys = append(keys, f.Key)
		}
	}
	if keys[0] != "once" || keys[1] != "sentinel" {
		t.Fatalf("delivered %v, want the retried event once, then the sentinel", keys)
	}
}
