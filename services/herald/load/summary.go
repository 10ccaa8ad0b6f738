package load

import (
	"fmt"
	"io"
)

// Summary writes r for a person: the same figures as its JSON, a few lines.
func (r *Result) Summary(w io.Writer) {
	fmt.Fprintf(w, "connections  %d of %d (%d failed, %d closed by the server), %.0f/s\n",
		r.Connected, r.Clients, r.ConnectErrors, r.Closed, r.ConnectPerSec)
	fmt.Fprintf(w, "published    %d via %s in %.1fs (%.0f/s, %d refused)\n",
		r.Published, r.Publish, r.Seconds, r.PublishPerSec, r.PublishErrors)
	fmt.Fprintf(w, "delivered    %d of %d (%.0f/s), lost %d, duplicates %d\n",
		r.Delivered, r.Expected, r.DeliveredPerS, r.Lost, r.Duplicates)
	fmt.Fprintf(w, "latency ms   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
		r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs)
	if r.ServerCPUSec > 0 || r.ServerRSSPerKB != 0 {
		fmt.Fprintf(w, "server       %.1f KB RSS per connection, %.2f CPU-s, %.2f µs per delivery (%.0f deliveries per CPU-s)\n",
			r.ServerRSSPerKB, r.ServerCPUSec, r.CPUUsPerMsg, r.DeliveriesPerS)
	}
	fmt.Fprintf(w, "machine      %.0f%% busy while publishing\n", r.MachineBusyPct)
}
