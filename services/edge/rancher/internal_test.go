package rancher

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/services/edge/hub"
)

func TestEncoderLeavesOutHeraldTypesUnlessAsked(t *testing.T) {
	t.Parallel()
	conn := func(id string) []byte {
		b, _ := json.Marshal(event.Event{Type: event.TypeConnections, Action: "create", Key: "user:a",
			Object: json.RawMessage(`{"ID":"` + id + `"}`)})
		return b
	}
	node, _ := json.Marshal(event.Event{Type: "node", Action: "update", Key: "n-1"})
	for _, tc := range []struct {
		enc               Encoder
		node, mine, other bool
	}{
		{EncoderFor(nil, "c-1"), true, false, false},
		{EncoderFor([]string{"node"}, "c-1"), true, false, false},
		{EncoderFor([]string{"node", "connections"}, "c-1"), true, false, true},
	} {
		for _, c := range []struct {
			payload []byte
			want    bool
		}{{node, tc.node}, {conn("c-1"), tc.mine}, {conn("c-2"), tc.other}} {
			_, err := tc.enc.Encode(&hub.Message{Data: c.payload})
			if got := err == nil; got != c.want || (err != nil && !errors.Is(err, hub.ErrSkip)) {
				t.Errorf("%+v on %s: sent %v (err %v), want %v", tc.enc, c.payload, got, err, c.want)
			}
		}
	}
	if EncoderFor(nil, "c-1") != EncoderFor(nil, "c-2") {
		t.Error("sockets that did not ask for connections must share one encoder")
	}
}
