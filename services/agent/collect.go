package agent

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/mem"
	psnet "github.com/shirou/gopsutil/v4/net"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// Collector gathers what the agent reports about its host. HostCollector is
// the real one; tests may swap in their own through Deps.
type Collector interface {
	// Metrics returns one sample stamped with the time it was taken. A
	// non-nil error with a usable sample means some parts were missing.
	Metrics(ctx context.Context) (agentwire.Metrics, error)
	// Facts returns the host's description, sent once per connection.
	Facts(ctx context.Context) (agentwire.FactsData, error)
}

// HostCollector reads the host's metrics and facts with gopsutil. Use it by
// pointer; the zero value is ready.
type HostCollector struct {
	primed atomic.Bool
}

var _ Collector = (*HostCollector)(nil)

// cpuPrimeWindow is how long the first sample measures CPU use: gopsutil's
// non-blocking form measures since the previous call, which for the first
// call is process start, a few milliseconds of start-up work (often 100%).
const cpuPrimeWindow = 250 * time.Millisecond

// Metrics returns CPU and memory use, the use of every mounted partition
// and the counters of every network interface. CPU percent is the busy
// share since the previous call, so only the first call waits (briefly).
func (h *HostCollector) Metrics(ctx context.Context) (agentwire.Metrics, error) {
	m := agentwire.Metrics{
		Type:      agentwire.TypeMetrics,
		Timestamp: time.Now().UTC().Format(time.RFC3339Nano),
		DiskUsage: []agentwire.DiskUsage{},
		Network:   []agentwire.NetworkInterface{},
	}
	var errs []error
	if !h.primed.Swap(true) {
		// Start the between-calls baseline now, and measure this first
		// sample over a short window of its own.
		cpu.PercentWithContext(ctx, 0, false)
		if pct, err := cpu.PercentWithContext(ctx, cpuPrimeWindow, false); err == nil && len(pct) > 0 {
			m.CPUPercent = pct[0]
		}
	} else if pct, err := cpu.PercentWithContext(ctx, 0, false); err != nil {
		errs = append(errs, fmt.Errorf("cpu: %w", err))
	} else if len(pct) > 0 {
		m.CPUPercent = pct[0]
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("memory: %w", err))
	} else {
		m.MemoryPercent = vm.UsedPercent
	}
	disks, err := diskUsage(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	m.DiskUsage = append(m.DiskUsage, disks...)
	if ifs, err := psnet.IOCountersWithContext(ctx, true); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	} else {
		for _, s := range ifs {
			m.Network = append(m.Network, agentwire.NetworkInterface{
				Interface: s.Name,
				BytesSent: s.BytesSent, BytesRecv: s.BytesRecv,
				PacketsSent: s.PacketsSent, PacketsRecv: s.PacketsRecv,
			})
		}
	}
	return m, errors.Join(errs...)
}

// diskUsage returns the use of each physical partition, once per mount
// point. A partition that cannot be read (permissions, a stale network
// mount) is left out rather than failing the sample.
func diskUsage(ctx context.Context) ([]agentwire.DiskUsage, error) {
	parts, err := disk.PartitionsWithContext(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("disk partitions: %w", err)
	}
	seen := map[string]bool{}
	var out []agentwire.DiskUsage
	for _, p := range parts {
		if seen[p.Mountpoint] {
			continue
		}
		seen[p.Mountpoint] = true
		u, err := disk.UsageWithContext(ctx, p.Mountpoint)
		if err != nil || u.Total == 0 {
			continue
		}
		out = append(out, agentwire.DiskUsage{
			Mountpoint: p.Mountpoint, Device: p.Device, Fstype: p.Fstype,
			TotalBytes: u.Total, UsedBytes: u.Used, FreeBytes: u.Free, UsagePercent: u.UsedPercent,
		})
	}
	return out, nil
}

// Facts describes the host (Salt's grains): name, operating system, kernel,
// CPUs, memory, boot time and the agent's own version.
func (*HostCollector) Facts(ctx context.Context) (agentwire.FactsData, error) {
	f := agentwire.FactsData{AgentVersion: agentVersion()}
	var errs []error
	if h, err := host.InfoWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("host: %w", err))
	} else {
		f.Hostname, f.OS, f.Platform, f.PlatformVersion = h.Hostname, h.OS, h.Platform, h.PlatformVersion
		f.Kernel, f.KernelArch = h.KernelVersion, h.KernelArch
		if h.BootTime > 0 {
			f.BootTime = time.Unix(int64(h.BootTime), 0).UTC().Format(time.RFC3339)
		}
	}
	if n, err := cpu.CountsWithContext(ctx, true); err != nil {
		errs = append(errs, fmt.Errorf("cpu count: %w", err))
	} else {
		f.CPUCount = n
	}
	if infos, err := cpu.InfoWithContext(ctx); err == nil && len(infos) > 0 {
		f.CPUModel = infos[0].ModelName
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		f.MemoryTotal = vm.Total
	}
	return f, errors.Join(errs...)
}

// agentVersion is the module version the binary was built from, or "dev".
func agentVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
