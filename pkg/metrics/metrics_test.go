package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldhq/herald/pkg/metrics"
)

// A socket counted open and closed moves the gauge and the counters, and /metrics shows them
// under the names the naming guide asks for.
func TestEdgeSocketAndHandler(t *testing.T) {
	closed := metrics.EdgeSocketOpened("drp")
	if v := testutil.ToFloat64(metrics.EdgeConnections.WithLabelValues("drp")); v != 1 {
		t.Fatalf("herald_edge_connections{dialect=drp} = %v, want 1", v)
	}
	closed(1012)
	if v := testutil.ToFloat64(metrics.EdgeConnections.WithLabelValues("drp")); v != 0 {
		t.Fatalf("open after close: %v", v)
	}
	if v := testutil.ToFloat64(metrics.EdgeDisconnects.WithLabelValues("drp", "1012")); v != 1 {
		t.Fatalf("disconnects{code=1012} = %v", v)
	}
	mux := http.NewServeMux()
	metrics.Register(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", metrics.Path, nil))
	body := rec.Body.String()
	for _, want := range []string{
		`herald_edge_connects_total{dialect="drp"} 1`,
		`herald_edge_disconnects_total{code="1012",dialect="drp"} 1`,
		"# TYPE herald_ws_send_queue_depth histogram",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Lint every Herald metric the page shows (names, _total, units, help).
	problems, err := testutil.GatherAndLint(metrics.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "herald_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}
