package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
)

// store publishes an event into the event stream and waits for it to be stored, returning its
// position.
func (r *rig) store(typ, action, key string) string {
	r.t.Helper()
	js, err := jetstream.New(r.nc)
	if err != nil {
		r.t.Fatal(err)
	}
	ev := event.Event{Type: typ, Action: action, Key: key, Principal: "user:test"}
	ev.Normalize(time.Now())
	data, _ := json.Marshal(ev)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, subject.ForEvent(&ev), data)
	if err != nil {
		r.t.Fatal(err)
	}
	epoch, err := eventstream.Epoch(ctx, js)
	if err != nil {
		r.t.Fatal(err)
	}
	return eventstream.FormatPosition(epoch, ack.Sequence)
}

func (f frame) position() string {
	var p string
	_ = json.Unmarshal(f.keys["Position"], &p)
	return p
}

// TestResumeReplaysWhatWasMissed: a client that saw events up to a position reconnects with
// ?since= and gets exactly the events after it that its registration selects, in order, then
// the resume frame, then live events; none twice.
func TestResumeReplaysWhatWasMissed(t *testing.T) {
	r := newRig(t)
	tok := r.token("*.*.*")
	first := r.dial(tok)
	first.register("register", "machines.*.*")
	r.store("machines", "create", "m0")
	seen := first.next()
	if seen.Key != "m0" || seen.position() == "" {
		t.Fatalf("first socket got %+v, want m0 with a position", seen)
	}
	first.ws.Close()
	// Missed while away, with another type in between that the registration does not select.
	for i := 1; i <= 5; i++ {
		r.store("machines", "update", fmt.Sprint("m", i))
		r.store("profiles", "save", fmt.Sprint("p", i))
	}
	c := r.dialURL(r.wsURL("token="+url.QueryEscape(tok)+"&since="+url.QueryEscape(seen.position())), nil)
	c.register("register", "machines.*.*")
	var keys []string
	for len(keys) < 5 {
		f := c.next()
		if f.Type == "websocket" {
			t.Fatalf("got %+v before the replayed events", f)
		}
		keys = append(keys, f.Key)
	}
	if strings.Join(keys, " ") != "m1 m2 m3 m4 m5" {
		t.Fatalf("replayed %v, want m1..m5 in order", keys)
	}
	done := c.next()
	var obj struct {
		Replayed int
		Position string
	}
	_ = json.Unmarshal(done.Object, &obj)
	if done.Type != "websocket" || done.Action != "resume" || obj.Replayed != 5 || obj.Position == "" {
		t.Fatalf("got %+v %s, want the resume frame with 5 replayed", done, done.Object)
	}
	r.store("machines", "delete", "m6")
	if f := c.next(); f.Key != "m6" || f.position() <= obj.Position {
		t.Fatalf("live after resume: got %+v (position %q after %q), want m6", f, f.position(), obj.Position)
	}
}

// TestResumeTooOld: a position from another stream, or from before the oldest stored event,
// gets DRP's error frame with 410, and then live events; a malformed one 400.
func TestResumeTooOld(t *testing.T) {
	r := newRig(t)
	tok := r.token("*.*.*")
	pos := r.store("machines", "create", "m0")
	r.store("machines", "create", "m1")
	js, _ := jetstream.New(r.nc)
	st, err := js.Stream(t.Context(), subject.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context()); err != nil { // the stored events age out
		t.Fatal(err)
	}
	epoch, _, _ := strings.Cut(pos, ":")
	for _, tc := range []struct{ since, code string }{
		{pos, "410"},                      // before the oldest stored event
		{"zzz" + epoch[3:] + ":1", "410"}, // another stream's
		{"not-a-position", "400"},
	} {
		c := r.dialURL(r.wsURL("token="+url.QueryEscape(tok)+"&since="+url.QueryEscape(tc.since)), nil)
		c.register("register", "machines.*.*")
		f := c.next()
		if f.Type != "websocket" || f.Action != "error" || !strings.Contains(string(f.Object), `"Code":`+tc.code) {
			t.Fatalf("since=%s: got %+v %s, want an error frame with Code %s", tc.since, f, f.Object, tc.code)
		}
		r.store("machines", "update", "live")
		if f := c.next(); f.Key != "live" {
			t.Fatalf("since=%s: after the refusal got %+v, want live events", tc.since, f)
		}
		c.ws.Close()
	}
}

// TestResumeCommand: resume sent before registering works as ?since=; after, it is refused.
func TestResumeCommand(t *testing.T) {
	r := newRig(t)
	tok := r.token("*.*.*")
	pos := r.store("profiles", "save", "p0")
	r.store("profiles", "save", "p1")
	c := r.dial(tok)
	c.send("resume " + pos)
	c.register("register", "profiles.*.*")
	if f := c.next(); f.Key != "p1" {
		t.Fatalf("got %+v, want the replayed p1", f)
	}
	if f := c.next(); f.Action != "resume" {
		t.Fatalf("got %+v, want the resume frame", f)
	}
	late := r.dial(tok)
	late.register("register", "profiles.*.*")
	late.send("resume " + pos)
	if f := late.next(); f.Action != "error" || !strings.Contains(string(f.Object), `"Code":409`) {
		t.Fatalf("resume after registering: got %+v %s, want 409", f, f.Object)
	}
}
