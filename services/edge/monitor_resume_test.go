package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/token"
)

// viewerFrame is a metrics or logs viewer's frame with Herald's resume fields.
type viewerFrame struct {
	Type     string          `json:"type"`
	Message  string          `json:"message"`
	Code     int             `json:"code"`
	Data     json.RawMessage `json:"data"`
	Position string          `json:"position"`
	Replayed int             `json:"replayed"`
}

func (f viewerFrame) seq(t testing.TB) uint64 {
	t.Helper()
	p, err := eventstream.ParsePosition(f.Position)
	if err != nil {
		t.Fatalf("frame %+v: %v", f, err)
	}
	return p.Seq
}

func readViewer(t testing.TB, ws *websocket.Conn) viewerFrame {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f viewerFrame
	if err := json.Unmarshal(msg, &f); err != nil {
		t.Fatalf("frame %q: %v", msg, err)
	}
	return f
}

// viewer opens a viewer socket of kind on r for srv-1, authenticated, resuming from since
// when it is not "", and reads auth_success.
func (r *rig) viewer(tok, kind, since string) *websocket.Conn {
	r.t.Helper()
	ws := r.dialMonitor(kind, "srv-1")
	auth := map[string]string{"type": "auth", "token": tok}
	if since != "" {
		auth["since"] = since
	}
	sendJSON(r.t, ws, auth)
	if f := readViewer(r.t, ws); f.Type != "auth_success" {
		r.t.Fatalf("got %+v, want auth_success", f)
	}
	return ws
}

// storeTelemetry stores one payload on subj in the telemetry stream, as ingest does, and
// returns its position.
func storeTelemetry(t testing.TB, js jetstream.JetStream, subj, payload string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, subj, []byte(payload), jetstream.WithExpectStream(subject.TelemetryStream))
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := eventstream.EpochIn(ctx, js, subject.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	return eventstream.FormatPosition(epoch, ack.Sequence)
}

// TestViewerResumeReplaysWhatWasMissed: a metrics viewer that saw the latest sample reconnects
// with its position and gets exactly the samples and alerts of its server stored since, in
// order (not the server's logs, not another server's samples), then resumed, then live.
func TestViewerResumeReplaysWhatWasMissed(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	tok := r.token("metrics.read.srv-1")
	pos0 := storeTelemetry(t, js, subject.Metrics("srv-1"), `{"n":0}`)
	first := r.viewer(tok, "metrics", "")
	if f := readViewer(t, first); f.Type != "metrics" || string(f.Data) != `{"n":0}` || f.Position != pos0 {
		t.Fatalf("got %+v, want the latest sample with its position %s", f, pos0)
	}
	first.Close()
	var want []string
	for i := 1; i <= 3; i++ {
		want = append(want, storeTelemetry(t, js, subject.Metrics("srv-1"), fmt.Sprintf(`{"n":%d}`, i)))
		storeTelemetry(t, js, subject.Logs("srv-1"), `{"message":"not on the metrics socket"}`)
		storeTelemetry(t, js, subject.Metrics("srv-2"), `{"n":-1}`)
	}
	want = append(want, storeTelemetry(t, js, subject.Alerts("srv-1"), `{"type":"cpu"}`))
	ws := r.viewer(tok, "metrics", pos0)
	for i, p := range want {
		f := readViewer(t, ws)
		wantType := map[bool]string{true: "alert", false: "metrics"}[i == 3]
		if f.Type != wantType || f.Position != p {
			t.Fatalf("replayed frame %d: got %+v, want %s at %s", i, f, wantType, p)
		}
	}
	if f := readViewer(t, ws); f.Type != "resumed" || f.Replayed != 4 || f.Position != want[3] {
		t.Fatalf("got %+v, want resumed with 4 replayed up to %s", f, want[3])
	}
	live := storeTelemetry(t, js, subject.Metrics("srv-1"), `{"n":4}`)
	if f := readViewer(t, ws); f.Type != "metrics" || f.Position != live {
		t.Fatalf("got %+v, want the live sample at %s", f, live)
	}
	// Nothing missed: resumed at once, with the position it gave.
	again := r.viewer(tok, "metrics", live)
	if f := readViewer(t, again); f.Type != "resumed" || f.Replayed != 0 || f.Position != live {
		t.Fatalf("got %+v, want resumed with nothing replayed at %s", f, live)
	}
}

// TestViewerResumeTooOld: a position before the stream's first entry, or from the stream
// before it was created anew, gets the 410 error frame; a malformed one 400; live frames
// follow each.
func TestViewerResumeTooOld(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	tok := r.token("logs.read.srv-1")
	old := storeTelemetry(t, js, subject.Logs("srv-1"), `{"message":"0"}`)
	storeTelemetry(t, js, subject.Logs("srv-1"), `{"message":"1"}`)
	st, err := js.Stream(t.Context(), subject.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context()); err != nil { // what is stored ages out
		t.Fatal(err)
	}
	check := func(since string, code int) {
		t.Helper()
		ws := r.viewer(tok, "logs", since)
		if f := readViewer(t, ws); f.Type != "error" || f.Code != code {
			t.Fatalf("since=%s: got %+v, want an error frame with code %d", since, f, code)
		}
		live := storeTelemetry(t, js, subject.Logs("srv-1"), `{"message":"live"}`)
		// By sequence: an edge learns a recreated stream's epoch when sequences go back or
		// on its periodic lookup, so a live frame may carry the old epoch a while (a resume
		// from it is then refused as too old: a relist, never a silent gap).
		if f := readViewer(t, ws); f.Type != "log" || f.seq(t) != positionSeq(t, live) {
			t.Fatalf("since=%s: after the refusal got %+v, want the live entry at %s", since, f, live)
		}
		ws.Close()
	}
	check(old, 410)
	check("not-a-position", 400)
	// The stream created anew: its sequences start over, so a position of the old one, even
	// a sequence the new one has, is from another stream.
	stale := storeTelemetry(t, js, subject.Logs("srv-1"), `{"message":"before"}`)
	if err := js.DeleteStream(t.Context(), subject.TelemetryStream); err != nil {
		t.Fatal(err)
	}
	natstest.TelemetryStream(t, r.nc)
	for range 5 {
		storeTelemetry(t, js, subject.Logs("srv-1"), `{"message":"new stream"}`)
	}
	check(stale, 410)
}

// TestViewerWithoutSinceGetsLiveOnly: a logs viewer without a position gets none of what was
// stored before it came, and live entries with positions.
func TestViewerWithoutSinceGetsLiveOnly(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	storeTelemetry(t, js, subject.Logs("srv-1"), `{"message":"before"}`)
	ws := r.viewer(r.token("logs.read.srv-1"), "logs", "")
	live := storeTelemetry(t, js, subject.Logs("srv-1"), `{"message":"live"}`)
	if f := readViewer(t, ws); f.Type != "log" || f.Position != live || !strings.Contains(string(f.Data), "live") {
		t.Fatalf("got %+v, want only the live entry at %s", f, live)
	}
}

// TestViewerResumeAcrossEdges: on a three-node NATS cluster with R3 streams, samples and
// alerts are stored at a steady rate; a viewer on one edge goes away, reconnects to another
// edge (on another node) with its last position, and ends with every entry of its server
// exactly once and in order: those missed replayed, the rest live, none lost or doubled at
// the seam.
func TestViewerResumeAcrossEdges(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	js, err := jetstream.New(natstest.Connect(t, c.Server(0)))
	if err != nil {
		t.Fatal(err)
	}
	// Three replicas are placed only once all three peers are current: retried, bounded.
	for _, cfg := range []jetstream.StreamConfig{eventstream.StreamConfig(time.Hour, 0, 3), eventstream.TelemetryConfig(time.Hour, 0, 3)} {
		testutil.Eventually(t, 30*time.Second, func() error {
			_, err := js.CreateOrUpdateStream(t.Context(), cfg)
			return err
		})
	}
	priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, b := newRigOn(t, c.Server(1), priv), newRigOn(t, c.Server(2), priv)
	tok := a.token("metrics.read.srv-1")

	// The steady stream of srv-1's samples, an alert every tenth, until stop.
	ctx, stop := context.WithCancel(context.Background())
	var stored atomic.Uint64 // the last sequence stored
	published := make(chan struct{})
	go func() {
		defer close(published)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			subj := subject.Metrics("srv-1")
			if i%10 == 9 {
				subj = subject.Alerts("srv-1")
			}
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			ack, err := js.Publish(pctx, subj, fmt.Appendf(nil, `{"n":%d}`, i))
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("publish %d: %v", i, err)
				}
				return
			}
			stored.Store(ack.Sequence)
		}
	}()
	t.Cleanup(func() { stop(); <-published })
	waitStored := func(n uint64) {
		t.Helper()
		testutil.Eventually(t, 30*time.Second, func() error {
			if got := stored.Load(); got < n {
				return fmt.Errorf("%d stored, want %d", got, n)
			}
			return nil
		})
	}

	// The stream holds srv-1's entries only, so the viewer must see every sequence.
	var got []uint64
	var since string // the last position seen
	ws := a.viewer(tok, "metrics", "")
	for len(got) < 30 {
		if f := readViewer(t, ws); f.Type == "metrics" || f.Type == "alert" {
			got, since = append(got, f.seq(t)), f.Position
		}
	}
	ws.Close()
	waitStored(got[len(got)-1] + 100) // missed while away
	ws = b.viewer(tok, "metrics", since)
	replayed := -1
	for replayed < 0 {
		switch f := readViewer(t, ws); f.Type {
		case "metrics", "alert":
			got = append(got, f.seq(t))
		case "resumed":
			replayed = f.Replayed
		default:
			t.Fatalf("got %+v while resuming", f)
		}
	}
	resumedAt := got[len(got)-1]
	waitStored(resumedAt + 100) // live after the seam
	stop()
	<-published
	last := stored.Load()
	for got[len(got)-1] < last {
		if f := readViewer(t, ws); f.Type == "metrics" || f.Type == "alert" {
			got = append(got, f.seq(t))
		}
	}
	if replayed < 100 {
		t.Errorf("replayed %d, want at least the 100 missed", replayed)
	}
	// Every sequence from the first seen to the last stored, each once, in order.
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("after sequence %d came %d (frame %d of %d): lost or doubled", got[i-1], got[i], i, len(got))
		}
	}
}

func positionSeq(t testing.TB, pos string) uint64 {
	t.Helper()
	return viewerFrame{Position: pos}.seq(t)
}
