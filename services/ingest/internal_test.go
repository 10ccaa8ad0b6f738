package ingest

import (
	"testing"
	"time"
)

func TestAlertTrackerSeverityAndIndependence(t *testing.T) {
	t.Parallel()
	tr := newAlertTracker(alertRules{thresholds: map[string]float64{"cpu": 50, "memory": 90, "disk": -1}, samples: 2})
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := tr.observe("a", map[string]float64{"cpu": 80, "disk": 99}, now); len(got) != 0 {
		t.Fatalf("first sample raised %v", got)
	}
	// Another server's samples do not count towards a's.
	if got := tr.observe("b", map[string]float64{"cpu": 80}, now); len(got) != 0 {
		t.Fatalf("server b raised %v", got)
	}
	got := tr.observe("a", map[string]float64{"cpu": 76, "memory": 95, "disk": 99}, now)
	if len(got) != 1 || got[0].Type != "cpu" || got[0].Severity != "critical" || got[0].CurrentValue != 76 {
		t.Fatalf("second sample = %+v, want one critical cpu alert (76 > 1.5 x 50)", got)
	}
	if got[0].Message != "CPU usage is 76.0%, which exceeds threshold of > 50.0%" {
		t.Errorf("message = %q", got[0].Message)
	}
	// A missing value neither counts nor resolves.
	if got := tr.observe("a", map[string]float64{}, now); len(got) != 0 {
		t.Fatalf("empty sample = %+v", got)
	}
	got = tr.observe("a", map[string]float64{"cpu": 50, "memory": 95}, now.Add(time.Minute))
	if len(got) != 2 || got[0].Type != "cpu" || !got[0].Resolved || got[0].ResolvedAt == nil ||
		got[1].Type != "memory" || got[1].Severity != "warning" {
		t.Fatalf("third sample = %+v, want cpu resolved (50 is not above 50) and memory raised", got)
	}
}
