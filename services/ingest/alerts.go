package ingest

import (
	"crypto/rand"
	"fmt"
	"strings"
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

// alertState is the alert state machine of one server, per usage type:
//
//	ok --(value > threshold, count < samples)--> counting
//	counting --(value > threshold, count reaches samples)--> raised   [emit raise]
//	raised --(value > threshold)--> raised                             [nothing: raised once]
//	counting|raised --(value <= threshold)--> ok                       [emit resolve if raised]
//
// Its JSON is kept in the agent state store (agentstate.PutAlerts) after every change, so an
// agent that moves to another ingest carries on where it was: a raised alert is resolved there,
// not raised again. A server silent for alertStateTTL loses its state (pruned by the store).
type alertState struct {
	Over   map[string]int    `json:"over,omitempty"`
	Active map[string]*Alert `json:"active,omitempty"`
}

// alertStateTTL is how long a server's alert state outlives its last change.
const alertStateTTL = 24 * time.Hour

// alertTitles name the usage types in messages ("CPU usage is 93.2%, ...").
var alertTitles = map[string]string{"cpu": "CPU", "memory": "Memory", "disk": "Disk"}

// observe feeds one fresh sample's usage to st and returns the alerts raised or resolved by it,
// and whether st changed (and should be stored).
func (r alertRules) observe(st *alertState, serverID string, usage map[string]float64, now time.Time) (out []Alert, changed bool) {
	if st.Over == nil {
		st.Over = make(map[string]int)
	}
	if st.Active == nil {
		st.Active = make(map[string]*Alert)
	}
	for _, typ := range []string{"cpu", "memory", "disk"} { // fixed order: deterministic output
		th := r.thresholds[typ]
		v, ok := usage[typ]
		if th <= 0 || !ok {
			continue
		}
		if v > th {
			if st.Over[typ] < r.samples { // counting past the bound changes nothing
				st.Over[typ]++
				changed = true
			}
			if st.Over[typ] >= r.samples && st.Active[typ] == nil {
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
				st.Active[typ] = a
				out = append(out, *a)
			}
			continue
		}
		if st.Over[typ] != 0 {
			delete(st.Over, typ)
			changed = true
		}
		if a := st.Active[typ]; a != nil {
			delete(st.Active, typ)
			at := now.UTC()
			a.Resolved, a.ResolvedAt = true, &at
			out = append(out, *a)
		}
	}
	return out, changed || len(out) > 0
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
