package edge_test

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkIdleConnections measures what one idle, subscribed DRP socket costs the edge: N real
// sockets are opened and registered, then the heap, the goroutine stacks, the goroutines and
// the process RSS are compared with before. The client side keeps only its net.Conn (a few
// hundred bytes, included in the figures); its gorilla state is dropped once the ack is read.
// HERALD_IDLE_CONNS sets N (default 2000); HERALD_IDLE_HEAP names a file for a heap profile
// taken while the sockets are open.
//
//	cd services/edge && HERALD_IDLE_CONNS=5000 go test -run '^$' -bench IdleConnections -benchtime 1x
func BenchmarkIdleConnections(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("HERALD_IDLE_CONNS")); err == nil && v > 0 {
		n = v
	}
	if os.Getenv("HERALD_IDLE_HEAP") != "" {
		runtime.MemProfileRate = 1 // every allocation, so small per-connection ones show exactly
	}
	for i := 0; i < b.N; i++ {
		r := newRig(b)
		u := r.wsURL("token=" + url.QueryEscape(r.token("*.*.*")))
		before := idleSnapshot()
		conns := make([]net.Conn, 0, n)
		for j := 0; j < n; j++ {
			conns = append(conns, dialIdle(b, u))
		}
		after := idleSnapshot()
		if path := os.Getenv("HERALD_IDLE_HEAP"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.WriteHeapProfile(f); err != nil {
				b.Fatal(err)
			}
			_ = f.Close()
		}
		per := func(a, z uint64) float64 { return (float64(z) - float64(a)) / float64(n) }
		b.ReportMetric(per(before.heap, after.heap), "heap-B/conn")
		b.ReportMetric(per(before.stack, after.stack), "stack-B/conn")
		b.ReportMetric(per(before.sys, after.sys), "gosys-B/conn")
		b.ReportMetric(per(before.rss, after.rss), "rss-B/conn")
		b.ReportMetric(per(uint64(before.goroutines), uint64(after.goroutines)), "goroutines/conn")
		if after.goroutines-before.goroutines > 3*n {
			b.Fatalf("%d goroutines for %d idle sockets", after.goroutines-before.goroutines, n)
		}
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

type idleStats struct {
	heap, stack, sys, rss uint64
	goroutines            int
}

func idleSnapshot() idleStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return idleStats{heap: m.HeapInuse, stack: m.StackInuse, sys: m.Sys - m.HeapReleased,
		rss: rssBytes(), goroutines: runtime.NumGoroutine()}
}

// rssBytes is VmRSS from /proc/self/status (0 where there is none).
func rssBytes() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// dialIdle opens a DRP socket, registers for everything, reads the ack and keeps only the
// TCP connection.
func dialIdle(tb testing.TB, u string) net.Conn {
	tb.Helper()
	var raw net.Conn
	d := websocket.Dialer{ReadBufferSize: 256, WriteBufferSize: 256, HandshakeTimeout: 10 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			raw = c
			return c, err
		}}
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("register *.*.*")); err != nil {
		tb.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); err != nil { // the ack
		tb.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Time{})
	return raw
}
