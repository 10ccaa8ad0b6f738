package ingest

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Alert is a threshold alert with chatops' alert fields; it is the payload on subject.Alerts
// and the Object of the alerts.raise / alerts.resolve events.
type Alert struct {
	ID           string     `json:"id"`
	ServerID     string     `json:"server_id"`
	Type         string     `json:"type"`     // "cpu", "memory" or "disk"
	Severity     string     `json:"severity"` // "warning", or "critical" above 1.5x the threshold
	Message      string     `json:"message"`
	Threshold    float64    `json:"threshold"`
	CurrentValue float64    `json:"current_value"` // the value that raised it
	Resolved     bool       `json:"resolved"`
	CreatedAt    time.Time  `json:"created_at"`
	ResolvedAt   *time.Time `json:"resolved_at"`
}

// alertRules are the thresholds per usage type (agentwire.Usage*) and the consecutive samples
// needed. A threshold <= 0 disables its type.
type alertRules struct {
	thresholds map[string]float64
	samples    int
}

// alertTracker is the alert state machine of every server held by this ingest, per usage type:
//
//	ok --(value > threshold, count < samples)--> counting
//	counting --(value > threshold, count reaches samples)--> raised   [emit raise]
//	raised --(value > threshold)--> raised                             [nothing: raised once]
//	counting|raised --(value <= threshold)--> ok                       [emit resolve if raised]
//
// It is per ingest: an agent that moves to another ingest starts from ok there.
type alertTracker struct {
	rules alertRules
	mu    sync.Mutex
	state map[string]*serverAlerts // by server id; guarded by mu
}

type serverAlerts struct {
	over   map[string]int
	active map[string]*Alert
}

func newAlertTracker(r alertRules) *alertTracker {
	return &alertTracker{rules: r, state: make(map[string]*serverAlerts)}
}

// alertTitles name the usage types in messages ("CPU usage is 93.2%, ...").
var alertTitles = map[string]string{"cpu": "CPU", "memory": "Memory", "disk": "Disk"}

// observe feeds one fresh sample's usage and returns the alerts raised or resolved by it.
func (t *alertTracker) observe(serverID string, usage map[string]float64, now time.Time) []Alert {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state[serverID]
	if st == nil {
		st = &serverAlerts{over: make(map[string]int), active: make(map[string]*Alert)}
		t.state[serverID] = st
	}
	var out []Alert
	for _, typ := range []string{"cpu", "memory", "disk"} { // fixed order: deterministic output
		th := t.rules.thresholds[typ]
		v, ok := usage[typ]
		if th <= 0 || !ok {
			continue
		}
		if v > th {
			st.over[typ]++
			if st.over[typ] >= t.rules.samples && st.active[typ] == nil {
				a := &Alert{
					ID:           newUUID(),
					ServerID:     serverID,
					Type:         typ,
					Severity:     "warning",
					Message:      fmt.Sprintf("%s usage is %.1f%%, which exceeds threshold of > %.1f%%", alertTitles[typ], v, th),
					Threshold:    th,
					CurrentValue: v,
					CreatedAt:    now.UTC(),
				}
				if v > 1.5*th {
					a.Severity = "critical"
				}
				st.active[typ] = a
				out = append(out, *a)
			}
			continue
		}
		st.over[typ] = 0
		if a := st.active[typ]; a != nil {
			delete(st.active, typ)
			at := now.UTC()
			a.Resolved, a.ResolvedAt = true, &at
			out = append(out, *a)
		}
	}
	return out
}

// newUUID returns a random (version 4) UUID, the id format of chatops' alerts.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// randomID returns n random bytes as hex, for connection ids.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToLower(fmt.Sprintf("%x", b))
}
