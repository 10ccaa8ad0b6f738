package wsconn

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const waitFor = 10 * time.Second

// served is one server-side Conn and the gorilla client talking to it over loopback TCP.
type served struct {
	conn    *Conn
	client  *websocket.Conn
	readErr chan error // what Start's ended got
	frames  chan []byte
	writes  *countingConn // the server's socket, counting write(2)s and able to fail them
}

// countingConn counts the writes that reach the socket; with fail set they fail instead.
type countingConn struct {
	net.Conn
	writes atomic.Int64
	fail   atomic.Bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.fail.Load() {
		return 0, errors.New("injected write failure")
	}
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func serve(t *testing.T, cfg Config) *served {
	t.Helper()
	s := &served{readErr: make(chan error, 1), frames: make(chan []byte, 1024)}
	ready := make(chan struct{})
	up := NewUpgrader(cfg, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		s.writes = &countingConn{Conn: c.bc.Conn}
		if cfg.PingInterval == 0 {
			// Nothing has used bc yet, and the pinger will not for 54 s; a test with short
			// pings gets no counting (the pinger's timer would race with this swap).
			c.bc.Conn = s.writes
		}
		s.conn = c
		close(ready)
		c.Start(func(msg []byte) { s.frames <- msg }, func(err error) { s.readErr <- err })
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	select {
	case <-ready:
	case <-time.After(waitFor):
		t.Fatal("no server connection")
	}
	s.client = ws
	return s
}

// serverTCP is the server side's TCP socket, under the read gate where there is one.
func serverTCP(t *testing.T, s *served) *net.TCPConn {
	t.Helper()
	c := s.conn.bc.Conn
	if g, ok := c.(*frameGate); ok {
		c = g.Conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("server connection is %T", c)
	}
	return tc
}

// readAll reads text frames until the connection ends and returns them with the error that
// ended it.
func (s *served) readAll(t *testing.T) ([]string, error) {
	t.Helper()
	_ = s.client.SetReadDeadline(time.Now().Add(waitFor))
	var got []string
	for {
		_, msg, err := s.client.ReadMessage()
		if err != nil {
			return got, err
		}
		got = append(got, string(msg))
	}
}

func wantClose(t *testing.T, err error, code int) *websocket.CloseError {
	t.Helper()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != code {
		t.Fatalf("connection ended with %v, want close %d", err, code)
	}
	return ce
}

// holdWrites stops the flusher at its next batch until the returned func is called, so a
// test can fill the queue deterministically.
func (s *served) holdWrites() (release func()) {
	s.conn.bc.mu.Lock()
	var once sync.Once
	return func() { once.Do(s.conn.bc.mu.Unlock) }
}

// Frames queued while a write is under way leave together: at most maxBatchFrames per
// write(2), in order.
func TestQueuedFramesAreBatchedIntoFewWrites(t *testing.T) {
	s := serve(t, Config{})
	const n = 200
	release := s.holdWrites()
	for i := range n {
		if !s.conn.Send(fmt.Appendf(nil, "frame %d", i)) {
			t.Fatalf("Send %d refused", i)
		}
	}
	release()
	for i := range n {
		_ = s.client.SetReadDeadline(time.Now().Add(waitFor))
		_, msg, err := s.client.ReadMessage()
		if err != nil || string(msg) != fmt.Sprintf("frame %d", i) {
			t.Fatalf("frame %d: %q, %v", i, msg, err)
		}
	}
	// One frame may have been taken alone before the hold; the rest go 64 at a time.
	if w := s.writes.writes.Load(); w > 1+(n+maxBatchFrames-1)/maxBatchFrames {
		t.Fatalf("%d frames took %d writes, want at most %d", n, w, 1+(n+maxBatchFrames-1)/maxBatchFrames)
	}
}

// A client that does not read is closed with 4000 once its queue holds SendQueue messages,
// and Send refuses from then on.
func TestQueueBoundInMessagesClosesSlowConsumer(t *testing.T) {
	s := serve(t, Config{SendQueue: 8})
	release := s.holdWrites()
	sent := 0
	for sent < 20 && s.conn.Send([]byte("x")) {
		sent++
	}
	release()
	if sent < 8 || sent > 9 { // 8 queued, plus perhaps one already in the flusher's hands
		t.Fatalf("%d Sends accepted with a queue of 8", sent)
	}
	if s.conn.Send([]byte("late")) {
		t.Fatal("Send accepted after the slow-consumer close")
	}
	_, err := s.readAll(t)
	if ce := wantClose(t, err, DisconnectSlow.Code); !strings.HasPrefix(ce.Text, "slow consumer") {
		t.Fatalf("reason %q", ce.Text)
	}
}

func TestQueueBoundInBytesClosesSlowConsumer(t *testing.T) {
	s := serve(t, Config{SendQueueBytes: 100})
	release := s.holdWrites()
	frame := make([]byte, 40)
	sent := 0
	for sent < 20 && s.conn.Send(frame) {
		sent++
	}
	release()
	if sent < 2 || sent > 3 { // 2 × 40 fit in 100 bytes, plus perhaps one being written
		t.Fatalf("%d Sends of 40 bytes accepted with 100 bytes of queue", sent)
	}
	_, err := s.readAll(t)
	wantClose(t, err, DisconnectSlow.Code)
}

// Frames queued before Close go out before the close frame, whose reason is cut to the 123
// bytes a close frame holds; only the first Close counts.
func TestCloseSendsQueuedFramesThenCodeAndReason(t *testing.T) {
	s := serve(t, Config{})
	s.conn.Send([]byte(`{"error":"bad"}`))
	long := strings.Repeat("r", 200)
	s.conn.Close(DisconnectPolicy.WithReason(long))
	s.conn.Close(DisconnectKicked)
	got, err := s.readAll(t)
	if len(got) != 1 || got[0] != `{"error":"bad"}` {
		t.Fatalf("frames before the close: %q", got)
	}
	if ce := wantClose(t, err, DisconnectPolicy.Code); ce.Text != long[:123] {
		t.Fatalf("reason of %d bytes, want the first 123", len(ce.Text))
	}
	select {
	case <-s.conn.Done():
	case <-time.After(waitFor):
		t.Fatal("Done not closed after the peer answered the close")
	}
	if s.conn.Send([]byte("after")) {
		t.Fatal("Send accepted after Close")
	}
}

// A frame over MaxMessageBytes ends the connection with 1009, and ended says why.
func TestReadLimitClosesWith1009(t *testing.T) {
	s := serve(t, Config{MaxMessageBytes: 16})
	if err := s.client.WriteMessage(websocket.TextMessage, []byte("small")); err != nil {
		t.Fatal(err)
	}
	if err := s.client.WriteMessage(websocket.TextMessage, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	_, err := s.readAll(t)
	wantClose(t, err, DisconnectTooBig.Code)
	select {
	case msg := <-s.frames:
		if string(msg) != "small" {
			t.Fatalf("handled %q", msg)
		}
	default:
		t.Fatal("the frame within the limit was not handled")
	}
	if err := <-s.readErr; !errors.Is(err, websocket.ErrReadLimit) {
		t.Fatalf("ended with %v, want ErrReadLimit", err)
	}
}

// A failed write ends the connection without a close frame (the write side is broken) and
// without blocking anyone: Send refuses, ended is called, Done closes.
func TestWriteErrorEndsConnection(t *testing.T) {
	s := serve(t, Config{})
	s.writes.fail.Store(true)
	s.conn.Send([]byte("lost"))
	_, err := s.readAll(t)
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		t.Fatalf("got close %d after a write failure, want no close frame", ce.Code)
	}
	select {
	case <-s.conn.Done():
	case <-time.After(waitFor):
		t.Fatal("Done not closed after a write failure")
	}
	if s.conn.Send([]byte("after")) {
		t.Fatal("Send accepted after a write failure")
	}
}

// A peer that never answers pings is dropped after PongWait.
func TestSilentPeerIsDropped(t *testing.T) {
	s := serve(t, Config{PingInterval: 50 * time.Millisecond, PongWait: 200 * time.Millisecond})
	// The client never reads, so it never answers a ping.
	select {
	case <-s.conn.Done():
	case <-time.After(waitFor):
		t.Fatal("silent peer still connected")
	}
	if err := <-s.readErr; err == nil {
		t.Fatal("ended with nil for a dead peer")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := (Config{PingInterval: time.Minute, PongWait: time.Second}).Validate(); err == nil {
		t.Fatal("ping interval longer than pong wait accepted")
	}
	if err := (Config{SendQueue: -1}).Validate(); err == nil {
		t.Fatal("negative queue accepted")
	}
}
