package agent

import (
	"encoding/json"
	"testing"
	"time"
)

// TestHostCollector reads this machine: the values differ everywhere, so the
// test checks shape and ranges.
func TestHostCollector(t *testing.T) {
	var c HostCollector
	m, err := c.Metrics(t.Context())
	if err == nil {
		// The second sample measures since the first.
		m, err = c.Metrics(t.Context())
	}
	if err != nil {
		t.Logf("partial sample: %v", err)
	}
	ts, perr := time.Parse(time.RFC3339Nano, m.Timestamp)
	if perr != nil || ts.Location() != time.UTC || time.Since(ts) > time.Minute {
		t.Fatalf("timestamp %q: %v", m.Timestamp, perr)
	}
	if m.CPUPercent < 0 || m.CPUPercent > 100 || m.MemoryPercent <= 0 || m.MemoryPercent > 100 {
		t.Fatalf("cpu %v%% memory %v%%", m.CPUPercent, m.MemoryPercent)
	}
	if len(m.Network) == 0 {
		t.Fatal("no network interface (not even loopback)")
	}
	for _, d := range m.DiskUsage {
		if d.Mountpoint == "" || d.TotalBytes == 0 || d.UsagePercent < 0 || d.UsagePercent > 100 {
			t.Fatalf("disk %+v", d)
		}
	}
	raw, _ := json.Marshal(m)
	var flat map[string]any
	json.Unmarshal(raw, &flat)
	for _, k := range []string{"type", "cpu_percent", "memory_percent", "disk_usage", "network", "timestamp"} {
		if _, ok := flat[k]; !ok {
			t.Fatalf("doc field %q missing from %s", k, raw)
		}
	}

	f, err := c.Facts(t.Context())
	if err != nil {
		t.Fatalf("facts: %v", err)
	}
	if f.Hostname == "" || f.OS == "" || f.Kernel == "" || f.CPUCount < 1 || f.BootTime == "" {
		t.Fatalf("facts %+v", f)
	}
}
