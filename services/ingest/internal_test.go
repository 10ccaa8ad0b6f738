package ingest

import (
	"encoding/json"
	"testing"
	"time"
)

func TestAlertStateSeverityAndChanges(t *testing.T) {
	t.Parallel()
	rules := alertRules{thresholds: map[string]float64{"cpu": 50, "memory": 90, "disk": -1}, samples: 2}
	var st alertState
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	observe := func(usage map[string]float64, at time.Time) []Alert {
		out, _ := rules.observe(&st, "a", usage, at)
		return out
	}
	if got := observe(map[string]float64{"cpu": 80, "disk": 99}, now); len(got) != 0 {
		t.Fatalf("first sample raised %v", got)
	}
	// The state survives a round trip through its JSON (the agent moved to another ingest).
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	st = alertState{}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	got := observe(map[string]float64{"cpu": 76, "memory": 95, "disk": 99}, now)
	if len(got) != 1 || got[0].Type != "cpu" || got[0].Severity != "critical" || got[0].CurrentValue != 76 {
		t.Fatalf("second sample = %+v, want one critical cpu alert (76 > 1.5 x 50)", got)
	}
	if got[0].Message != "CPU usage is 76.0%, which exceeds threshold of > 50.0%" {
		t.Errorf("message = %q", got[0].Message)
	}
	// A missing value neither counts nor resolves.
	if out, changed := rules.observe(&st, "a", map[string]float64{}, now); len(out) != 0 || changed {
		t.Fatalf("empty sample = %+v, changed %v", out, changed)
	}
	// Above the threshold while raised: nothing new, nothing to store.
	if out, changed := rules.observe(&st, "a", map[string]float64{"cpu": 99}, now); len(out) != 0 || changed {
		t.Fatalf("sample while raised = %+v, changed %v", out, changed)
	}
	got = observe(map[string]float64{"cpu": 50, "memory": 95}, now.Add(time.Minute))
	if len(got) != 2 || got[0].Type != "cpu" || !got[0].Resolved || got[0].ResolvedAt == nil ||
		got[1].Type != "memory" || got[1].Severity != "warning" {
		t.Fatalf("third sample = %+v, want cpu resolved (50 is not above 50) and memory raised", got)
	}
}

func TestJIDsIncrease(t *testing.T) {
	t.Parallel()
	var j jidSource
	at := time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.UTC)
	a, b := j.next(at), j.next(at)
	if a != "20250607080910123456" || b != "20250607080910123457" {
		t.Errorf("jids = %s, %s", a, b)
	}
	if c := j.next(at.Add(-time.Hour)); c <= b || len(c) != 20 {
		t.Errorf("jid after a clock step back = %s, want > %s", c, b)
	}
}
