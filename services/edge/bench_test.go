package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/subject"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
	"github.com/heraldhq/herald/pkg/wsconn"
	"github.com/heraldhq/herald/services/edge/drp"
	"github.com/heraldhq/herald/services/edge/hub"
)

// countSink is a Sink that only counts: the hub's own cost, without sockets.
type countSink struct{ n *atomic.Int64 }

func (s countSink) Deliver([]byte, uint64) bool { s.n.Add(1); return true }
func (s countSink) Close(wsconn.Disconnect)     {}

// republished is event i as the event stream republishes it to edges (its sequence in the
// headers): the benchmarks measure the edge, not JetStream's storage.
func republished(b *testing.B, i int) *nats.Msg {
	subj, data := eventPayload(b, i)
	rp, err := subject.ToRepublished(subj)
	if err != nil {
		b.Fatal(err)
	}
	return &nats.Msg{Subject: rp, Data: data, Header: nats.Header{
		jetstream.StreamHeader:   {subject.EventStream},
		jetstream.SequenceHeader: {strconv.Itoa(i + 1)},
	}}
}

// eventPayload is a ~100-byte object, the size the README's performance figures use.
func eventPayload(b *testing.B, i int) (string, []byte) {
	ev := event.Event{Type: "machines", Action: "update", Key: fmt.Sprint("m", i%100),
		Principal: "user:bench", Object: json.RawMessage(`{"Name":"m1","Stage":"discover","Runnable":true,"Address":"10.0.0.1"}`)}
	ev.Normalize(time.Now())
	data, err := json.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	return subject.ForEvent(&ev), data
}

// measurement is where a benchmark's timed part started.
type measurement struct {
	start time.Time
	cpu   time.Duration
	mem   runtime.MemStats
}

func startMeasuring() measurement {
	m := measurement{cpu: processCPU()}
	runtime.ReadMemStats(&m.mem)
	m.start = time.Now()
	return m
}

// processCPU is the CPU time the process has used (user and system): unlike the wall clock
// it barely moves with what else the machine runs, so runs from a busy sitting compare.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report turns a run into wall and CPU ns and allocations per delivered message. The CPU
// counts everything in the process: NATS, the hub, and the benchmark's own clients.
func (m measurement) report(b *testing.B, delivered int64) {
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	wall, cpu := time.Since(m.start), processCPU()-m.cpu
	b.ReportMetric(float64(wall.Nanoseconds())/float64(delivered), "ns/msg")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(delivered), "cpu-ns/msg")
	b.ReportMetric(float64(m1.Mallocs-m.mem.Mallocs)/float64(delivered), "allocs/msg")
	b.ReportMetric(float64(delivered)/wall.Seconds(), "msgs/s")
}

// BenchmarkHubFanout: one event through NATS to N clients of one filter, sinks that count.
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("%dClients", n), func(b *testing.B) {
			ns := natstest.RunServer(b)
			h := hub.New(natstest.Connect(b, ns), hub.Config{}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = h.Run(ctx) }()
			var count atomic.Int64
			subs, _ := subject.ForFilter(event.Filter{})
			for i := 0; i < n; i++ {
				c, err := h.NewClient(countSink{&count}, drp.Encoder{})
				if err != nil {
					b.Fatal(err)
				}
				if err := h.Subscribe(ctx, c, subs); err != nil {
					b.Fatal(err)
				}
			}
			pub := natstest.Connect(b, ns)
			want := int64(b.N) * int64(n)
			b.ResetTimer()
			m := startMeasuring()
			for i := 0; i < b.N; i++ {
				pace(b, &count, i, n)
				if err := pub.PublishMsg(republished(b, i)); err != nil {
					b.Fatal(err)
				}
			}
			waitCount(b, &count, want)
			b.StopTimer()
			m.report(b, want)
		})
	}
}

// BenchmarkWebSocketFanout: the whole edge path, NATS to the hub to wsconn to N real gorilla
// clients over loopback, which read on the same two cores.
func BenchmarkWebSocketFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("%dClients", n), func(b *testing.B) {
			r := newRig(b)
			tok := r.token("*.*.*")
			var count atomic.Int64
			var wg sync.WaitGroup
			conns := make([]*websocket.Conn, n)
			for i := range conns {
				ws, _, err := websocket.DefaultDialer.Dial(r.wsURL("token="+tok), nil)
				if err != nil {
					b.Fatal(err)
				}
				conns[i] = ws
				if err := ws.WriteMessage(websocket.TextMessage, []byte("register *.*.*")); err != nil {
					b.Fatal(err)
				}
				if _, _, err := ws.ReadMessage(); err != nil { // the ack
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if _, _, err := ws.NextReader(); err != nil {
							return
						}
						count.Add(1)
					}
				}()
			}
			want := int64(b.N) * int64(n)
			b.ResetTimer()
			m := startMeasuring()
			for i := 0; i < b.N; i++ {
				pace(b, &count, i, n)
				if err := r.nc.PublishMsg(republished(b, i)); err != nil {
					b.Fatal(err)
				}
			}
			waitCount(b, &count, want)
			b.StopTimer()
			m.report(b, want)
			for _, ws := range conns {
				ws.Close()
			}
			wg.Wait()
		})
	}
}

// window is how many events may be in flight: well inside the default send queue (1024), so
// the benchmark measures throughput under a burst, not the slow-consumer rule.
const window = 256

// pace holds publishing back until fewer than window events are undelivered.
func pace(b *testing.B, count *atomic.Int64, i, clients int) {
	if i >= window {
		waitCount(b, count, int64(i-window)*int64(clients))
	}
}

// waitCount waits for every delivery, bounded: a lost message fails the benchmark.
func waitCount(b *testing.B, count *atomic.Int64, want int64) {
	deadline := time.Now().Add(60 * time.Second)
	for count.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", count.Load(), want)
		}
		runtime.Gosched()
	}
}
