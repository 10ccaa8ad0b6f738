package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/eventstream"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil"
)

// BenchmarkResumeNeighbours: 100 live DRP clients of one edge get 200 events/s; their
// publish-to-receive p99 is measured alone, then while another client of the same edge resumes
// 100,000 stored events behind. The replay must cost the resuming socket and its own consumer,
// not its neighbours: the bound is p99 with the replay no more than 2x p99 without, or 20 ms
// over it, whichever is larger (read the two figures; a benchmark asserts nothing).
//
//	cd services/edge && go test -run '^$' -bench ResumeNeighbours -benchtime 1x .
func BenchmarkResumeNeighbours(b *testing.B) {
	const neighbours, rate, window, behind = 100, 200, 3 * time.Second, 100_000
	r := newRig(b)
	tok := r.token("*.*.*")
	js, err := jetstream.New(r.nc)
	if err != nil {
		b.Fatal(err)
	}
	// The backlog the resuming client missed: stored, not live for anyone here.
	ctx := context.Background()
	info0, err := js.Stream(ctx, subject.EventStream)
	if err != nil {
		b.Fatal(err)
	}
	start := eventstream.FormatPosition(eventstream.EpochOf(info0.CachedInfo()), info0.CachedInfo().State.LastSeq)
	for i := range behind {
		ev := event.Event{Type: "bulk", Action: "save", Key: fmt.Sprint("b", i), Principal: "user:bench"}
		ev.Normalize(time.Now())
		data, _ := json.Marshal(ev)
		if _, err := js.PublishAsync(subject.ForEvent(&ev), data); err != nil {
			b.Fatal(err)
		}
		if i%4096 == 0 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()

	var mu sync.Mutex
	var lat []time.Duration
	recording := false
	for range neighbours {
		ws, _, err := websocket.DefaultDialer.Dial(r.wsURL("token="+url.QueryEscape(tok)), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, []byte("register live.*.*")); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil { // the ack
			b.Fatal(err)
		}
		go func() {
			for {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					return
				}
				var f struct{ Object struct{ Sent int64 } }
				if json.Unmarshal(msg, &f) == nil && f.Object.Sent != 0 {
					d := time.Since(time.Unix(0, f.Object.Sent))
					mu.Lock()
					if recording {
						lat = append(lat, d)
					}
					mu.Unlock()
				}
			}
		}()
	}
	measure := func() time.Duration {
		mu.Lock()
		lat, recording = lat[:0], true
		mu.Unlock()
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		sent := 0
		for end := time.Now().Add(window); time.Now().Before(end); sent++ {
			<-tick.C
			r.publish("live", "tick", "x", map[string]int64{"Sent": time.Now().UnixNano()})
		}
		// Every neighbour's copy of every event, or what came within a bound.
		_ = testutil.Poll(10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(lat) < sent*neighbours {
				return fmt.Errorf("%d of %d deliveries", len(lat), sent*neighbours)
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		recording = false
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatal("no live event arrived")
		}
		return lat[len(lat)*99/100]
	}
	b.ResetTimer()
	for range b.N {
		alone := measure()
		// The resuming client: replays the backlog while the neighbours are measured again.
		ws, _, err := websocket.DefaultDialer.Dial(r.wsURL("token="+url.QueryEscape(tok)+"&since="+url.QueryEscape(start)), nil)
		if err != nil {
			b.Fatal(err)
		}
		replayed := make(chan int, 1)
		go func() {
			n := 0
			defer func() { replayed <- n }()
			_ = ws.WriteMessage(websocket.TextMessage, []byte("register bulk.*.*"))
			_ = ws.WriteMessage(websocket.TextMessage, []byte("resume"))
			for n < behind {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					return
				}
				var f struct{ Type string }
				if json.Unmarshal(msg, &f) == nil && f.Type == "bulk" {
					n++
				}
			}
		}()
		began := time.Now()
		during := measure()
		n := <-replayed
		took := time.Since(began)
		ws.Close()
		if n != behind {
			b.Fatalf("the resuming client got %d of %d stored events", n, behind)
		}
		b.ReportMetric(float64(alone.Microseconds())/1000, "p99-alone-ms")
		b.ReportMetric(float64(during.Microseconds())/1000, "p99-during-replay-ms")
		b.ReportMetric(float64(behind)/took.Seconds(), "replayed/s")
	}
}
