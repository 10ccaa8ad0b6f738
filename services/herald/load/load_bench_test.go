package load_test

import (
	"os"
	"testing"
	"time"

	"github.com/heraldhq/herald/services/herald/load"
)

// The whole fan-out with real sockets, in one process: the all-in-one stack, 1,000 DRP
// clients, 1,000 events/s straight onto NATS for 5 s. Run it once with a profile and look at
// the edge's share (the clients are in the same process):
//
//	cd services/herald && go test -run '^$' -bench BenchmarkFanoutRealSockets -benchtime 1x \
//	    -cpuprofile /tmp/edge.prof ./load && go tool pprof -top -focus 'services/edge|pkg/wsconn' /tmp/edge.prof
func BenchmarkFanoutRealSockets(b *testing.B) {
	s := startStack(b)
	for b.Loop() {
		res, err := load.Run(b.Context(), load.Config{
			Edges:    []string{"ws://" + s.HTTPAddr() + "/api/v3/ws"},
			Token:    "admin:correct horse",
			Clients:  1000,
			Sources:  4,
			Rate:     1000,
			Duration: 5 * time.Second,
			Publish:  load.PublishNATS,
			NATSURL:  s.NATSServer().ClientURL(),
			// The whole process: the stack and the clients alike. Steadier than the wall
			// clock on a shared machine.
			Pids: []int{os.Getpid()},
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.DeliveredPerS, "delivered/s")
		b.ReportMetric(float64(res.Lost), "lost")
		b.ReportMetric(res.P99Ms, "p99-ms")
		b.ReportMetric(res.CPUUsPerMsg*1000, "process-cpu-ns/delivery")
	}
}
