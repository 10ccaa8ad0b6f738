package natsx_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldhq/herald/pkg/metrics"
	"github.com/heraldhq/herald/pkg/natsx"
	heraldtest "github.com/heraldhq/herald/pkg/testutil"
	"github.com/heraldhq/herald/pkg/testutil/natstest"
)

// The probe answers itself while the connection is up; cut the path to NATS and the check
// fails at once, and the connection's metrics say so; restore it and the check passes again.
func TestHealthProbeFollowsTheConnection(t *testing.T) {
	ns := natstest.RunServer(t)
	proxy := heraldtest.StartProxy(t, ns.Addr().String())
	nc, err := natsx.Connect(t.Context(), "nats://"+proxy.Addr(), "probe-test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p, err := natsx.ServeHealth(nc, "probe-test")
	if err != nil {
		t.Fatal(err)
	}
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		return p.Check(ctx)
	}
	connected := metrics.NATSConnected.WithLabelValues("probe-test")
	heraldtest.Eventually(t, 5*time.Second, func() error {
		if err := check(); err != nil {
			return err
		}
		if v := testutil.ToFloat64(connected); v != 1 {
			return errors.New("herald_nats_connected not 1")
		}
		return nil
	})
	disconnects := testutil.ToFloat64(metrics.NATSDisconnects.WithLabelValues("probe-test"))
	proxy.Cut()
	start := time.Now()
	heraldtest.Eventually(t, 2*time.Second, func() error {
		if err := check(); err == nil || !strings.Contains(err.Error(), "nats") {
			return errors.New("check still passes")
		}
		return nil
	})
	t.Logf("not ready %s after the cut", time.Since(start))
	// The client's disconnect handler runs on its own goroutine, possibly after the probe
	// has already failed.
	heraldtest.Eventually(t, 5*time.Second, func() error {
		if testutil.ToFloat64(metrics.NATSDisconnects.WithLabelValues("probe-test")) <= disconnects {
			return errors.New("disconnect not counted")
		}
		return nil
	})
	proxy.Restore()
	heraldtest.Eventually(t, 5*time.Second, check)
}
