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

// TestTakeoverStateBoundsChurn: two takeovers within the window are granted, the third is
// refused (first refusal flagged, for the one log line), retries keep the block, and once a
// window passes without a newcomer the next one is granted again.
func TestTakeoverStateBoundsChurn(t *testing.T) {
	t.Parallel()
	r := takeoverRules{window: time.Minute, limit: 2}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var st takeoverState
	if a, _ := st.decide(t0, r); a.Refused || len(a.Takeovers) != 1 {
		t.Fatalf("first takeover = %+v", a)
	}
	// The successor carries the history on.
	a, _ := st.decide(t0.Add(2*time.Second), r)
	var next takeoverState
	next.inherit(a.Takeovers)
	if a.Refused || len(a.Takeovers) != 2 {
		t.Fatalf("second takeover = %+v", a)
	}
	a, first := next.decide(t0.Add(4*time.Second), r)
	if !a.Refused || !first {
		t.Fatalf("third takeover within the window = %+v first=%v, want the first refusal", a, first)
	}
	a, first = next.decide(t0.Add(50*time.Second), r)
	if !a.Refused || first {
		t.Fatalf("retry while blocked = %+v first=%v, want refused, not logged again", a, first)
	}
	if a, _ := next.decide(t0.Add(50*time.Second+r.window), r); a.Refused || len(a.Takeovers) != 1 {
		t.Fatalf("after a quiet window = %+v, want granted with a fresh count", a)
	}
	// A single blip in a long while is always granted.
	var one takeoverState
	for i := range 5 {
		if a, _ := one.decide(t0.Add(time.Duration(i)*2*time.Minute), r); a.Refused {
			t.Fatalf("blip %d refused", i)
		}
	}
}
