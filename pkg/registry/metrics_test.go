package registry_test

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/registry"
)

// The tracker's counted registry answers exactly as the registry it wraps (a miss is still
// ErrNotFound) and counts the call.
func TestTrackerRegistryCountsAndKeepsErrors(t *testing.T) {
	tr, err := registry.NewTracker(registry.NewMemory(), registry.TrackerConfig{Instance: "edge-test"})
	if err != nil {
		t.Fatal(err)
	}
	ok := metrics.RegistryOps.WithLabelValues("get", "ok")
	before := testutil.ToFloat64(ok)
	if _, err := tr.Registry().Get(t.Context(), "127.0.0.1:1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get of an unknown address: %v, want ErrNotFound", err)
	}
	if got := testutil.ToFloat64(ok) - before; got != 1 {
		t.Fatalf("get counted %v times, want 1", got)
	}
}
