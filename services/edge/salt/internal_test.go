package salt

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/services/edge/hub"
)

func TestAllEventsEncoderPrefixesAndHeraldTypes(t *testing.T) {
	t.Parallel()
	mk := func(ev event.Event) []byte { b, _ := json.Marshal(ev); return b }
	conn := func(id string) []byte {
		return mk(event.Event{Type: event.TypeConnections, Action: "create", Key: "user:a", Object: json.RawMessage(`{"ID":"` + id + `"}`)})
	}
	job := mk(event.Event{Type: "jobs", Action: "new", Key: "2025", Object: json.RawMessage(`{}`)})
	prof := mk(event.Event{Type: "profiles", Action: "save", Key: "g"})
	for _, tc := range []struct {
		enc                    AllEventsEncoder
		job, prof, mine, other bool
	}{
		{AllEventsEncoderFor(nil, "c-1"), true, true, false, false},
		{AllEventsEncoderFor([]string{"salt/job/"}, "c-1"), true, false, false, false},
		{AllEventsEncoderFor([]string{"herald/connections", "herald/profiles/"}, "c-1"), false, true, false, true},
	} {
		for _, c := range []struct {
			payload []byte
			want    bool
		}{{job, tc.job}, {prof, tc.prof}, {conn("c-1"), tc.mine}, {conn("c-2"), tc.other}} {
			_, err := tc.enc.Encode(&hub.Message{Data: c.payload})
			if got := err == nil; got != c.want || (err != nil && !errors.Is(err, hub.ErrSkip)) {
				t.Errorf("%+v on %s: sent %v (err %v), want %v", tc.enc, c.payload, got, err, c.want)
			}
		}
	}
}
