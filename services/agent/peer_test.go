package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// The tests below run the agent against a real WebSocket server that plays
// the ingest's side of the protocol in a few lines: auth, acks, pongs. It is
// not the ingest; the lead's end-to-end test runs the agent binary against
// the real stack.

const testKey = "hk_test-key"

// peerFrame is one frame the peer received, other than metrics and pings.
type peerFrame struct {
	conn int
	typ  string
	raw  []byte
}

// gotSample is one metrics message the peer received.
type gotSample struct {
	conn int
	seq  uint64
	ts   string
	cpu  float64
}

// peerConn is one agent connection the peer accepted.
type peerConn struct {
	ws      *websocket.Conn
	mu      sync.Mutex // one writer at a time
	closing bool       // a close frame was sent: nothing more is acked
}

func (c *peerConn) send(v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return websocket.ErrCloseSent
	}
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteJSON(v)
}

// closeWith sends a close frame, as an ingest going away does. The handler
// keeps reading until the agent answers it, so every ack sent before it
// reaches the agent (an abrupt close could turn into a TCP reset that
// discards acks the agent has not read yet).
func (c *peerConn) closeWith(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

type ingestPeer struct {
	t    *testing.T
	srv  *httptest.Server
	down atomic.Bool // refuse upgrades with 503
	// silent: after auth_success, answer nothing (no acks, no pongs).
	silent bool

	mu       sync.Mutex
	attempts int // auth messages received
	conns    []*peerConn
	samples  []gotSample
	acked    map[uint64]bool
	doubles  []uint64 // seqs received again after they were acked
	frames   chan peerFrame
}

func newIngestPeer(t *testing.T) *ingestPeer {
	p := &ingestPeer{t: t, acked: map[uint64]bool{}, frames: make(chan peerFrame, 1024)}
	up := websocket.Upgrader{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "ingest down", http.StatusServiceUnavailable)
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		p.serve(ws)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *ingestPeer) url() string {
	return "ws" + strings.TrimPrefix(p.srv.URL, "http") + "/api/v1/agents/ws"
}

func (p *ingestPeer) serve(ws *websocket.Conn) {
	var auth agentwire.Auth
	if err := ws.ReadJSON(&auth); err != nil || auth.Type != agentwire.TypeAuth {
		return
	}
	p.mu.Lock()
	p.attempts++
	p.mu.Unlock()
	c := &peerConn{ws: ws}
	if auth.APIKey != testKey {
		c.send(agentwire.NewError(agentwire.MessageInvalidKey))
		ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.ClosePolicyViolation, agentwire.MessageInvalidKey), time.Now().Add(time.Second))
		return
	}
	if c.send(agentwire.AuthSuccess{Type: agentwire.TypeAuthSuccess, ServerID: "srv-1", Message: agentwire.MessageConnected}) != nil {
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c)
	id := len(p.conns)
	p.mu.Unlock()
	for {
		_, raw, err := ws.ReadMessage()
		if err != nil {
			return
		}
		env, err := agentwire.Peek(raw)
		if err != nil {
			p.t.Errorf("agent sent an invalid frame %q: %v", raw, err)
			return
		}
		switch env.Type {
		case agentwire.TypePing:
			if !p.silent {
				c.send(agentwire.Ping{Type: agentwire.TypePong})
			}
		case agentwire.TypeMetrics:
			m, err := agentwire.Decode[agentwire.Metrics](raw)
			if err != nil || m.Seq == 0 || m.ServerID != "srv-1" {
				p.t.Errorf("bad metrics frame %s: %v", raw, err)
				return
			}
			p.mu.Lock()
			p.samples = append(p.samples, gotSample{conn: id, seq: m.Seq, ts: m.Timestamp, cpu: m.CPUPercent})
			if p.acked[m.Seq] {
				p.doubles = append(p.doubles, m.Seq)
			}
			p.mu.Unlock()
			if p.silent {
				continue
			}
			if c.send(agentwire.MetricsReceived{Type: agentwire.TypeMetricsReceived, Status: agentwire.StatusOK, Seq: m.Seq}) != nil {
				return
			}
			// Acked only once the ack is on the wire: a sample whose ack
			// was lost with the connection may legitimately come again.
			p.mu.Lock()
			p.acked[m.Seq] = true
			p.mu.Unlock()
		default:
			select {
			case p.frames <- peerFrame{conn: id, typ: env.Type, raw: raw}:
			default:
				p.t.Errorf("peer frame queue full; dropped %s", raw)
			}
		}
	}
}

// conn returns the i-th (1-based) accepted connection.
func (p *ingestPeer) conn(i int) *peerConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[i-1]
}

func (p *ingestPeer) connCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *ingestPeer) snapshot() []gotSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]gotSample(nil), p.samples...)
}

// next returns the next non-metrics frame of type typ, skipping others
// (facts and logs arrive whenever they arrive).
func (p *ingestPeer) next(t *testing.T, typ string) peerFrame {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f := <-p.frames:
			if f.typ == typ {
				return f
			}
		case <-timeout:
			t.Fatalf("no %q frame within 10s", typ)
		}
	}
}

// countingCollector produces samples whose cpu_percent is their number, so
// the tests can tell them apart without reading the host.
type countingCollector struct{ n atomic.Int64 }

func (c *countingCollector) Metrics(context.Context) (agentwire.Metrics, error) {
	return agentwire.Metrics{
		Type:       agentwire.TypeMetrics,
		CPUPercent: float64(c.n.Add(1)),
		DiskUsage:  []agentwire.DiskUsage{},
		Network:    []agentwire.NetworkInterface{},
		Timestamp:  time.Now().UTC().Format(time.RFC3339Nano),
	}, nil
}

func (c *countingCollector) Facts(context.Context) (agentwire.FactsData, error) {
	return agentwire.FactsData{Hostname: "test-host", OS: "linux", CPUCount: 2}, nil
}

// testConfig is a fast agent configuration against p.
func testConfig(p *ingestPeer) Config {
	return Config{
		URL: p.url(), APIKey: testKey,
		Interval: 20 * time.Millisecond, CommandTimeout: 10 * time.Second, OutputCap: 1 << 10, Buffer: 1000,
		DockerSocket: "/nonexistent/docker.sock",
		PingInterval: 5 * time.Second, BackoffBase: 5 * time.Millisecond, BackoffCap: 20 * time.Millisecond,
		HandshakeTimeout: 5 * time.Second, TailPoll: 5 * time.Millisecond,
	}
}

// startAgent runs an agent until the test ends, and checks that Run
// returns promptly once cancelled.
func startAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := New(cfg, Deps{Log: log, Collector: &countingCollector{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancellation")
		}
	})
	return a
}

func decodeFrame[T any](t *testing.T, f peerFrame) T {
	t.Helper()
	v, err := agentwire.Decode[T](f.raw)
	if err != nil {
		t.Fatalf("decode %s: %v", f.raw, err)
	}
	return v
}

func errorsOf(samples []gotSample) error {
	var b strings.Builder
	for _, s := range samples {
		fmt.Fprintf(&b, "c%d#%d ", s.conn, s.seq)
	}
	return fmt.Errorf("samples so far: %s", b.String())
}
