package ingest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/app"
	"github.com/heraldhq/herald/services/ingest"
)

// Readiness says whether HERALD_EVENTS takes writes: ready with JetStream, 503 naming the
// check within its timeout once JetStream is gone, and the probe stores nothing.
func TestReadinessNeedsTheEventStream(t *testing.T) {
	s := startStack(t, ingest.Config{})
	h := &app.Health{CheckTimeout: time.Second}
	h.AddCheck("event stream", s.svc.CheckStream)
	h.SetReady(true)
	mux := http.NewServeMux()
	h.Register(mux)
	ready := func() (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := ready(); code != http.StatusOK {
		t.Fatalf("with JetStream: %d %q", code, body)
	}
	js, err := s.nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.StreamInfo(ingest.StreamName)
	if err != nil || info.State.Msgs != 0 {
		t.Fatalf("the probe stored something: %+v %v", info, err)
	}

	if err := s.ns.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, body := ready()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "event stream") {
		t.Fatalf("without JetStream: %d %q, want 503 naming the event stream", code, body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("readiness took %s, want at most the check timeout", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.svc.CheckStream(ctx); err == nil {
		t.Error("CheckStream passed without JetStream")
	}
}
