//go:build linux

package wsconn

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/testutil"
)

// clientFrame is one masked client frame, as a browser would send it.
func clientFrame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	f = append(f, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i&3])
	}
	return f
}

func textFrame(s string) []byte { return clientFrame(websocket.TextMessage, true, []byte(s)) }

// raw is the client's TCP connection, for writing frames byte by byte or many at once.
func (s *served) raw(t *testing.T) *net.TCPConn {
	t.Helper()
	c, ok := s.client.NetConn().(*net.TCPConn)
	if !ok {
		t.Fatalf("client connection is %T", s.client.NetConn())
	}
	return c
}

func (s *served) wantFrames(t *testing.T, want ...string) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-s.frames:
			if string(got) != w {
				t.Fatalf("frame %d: got %q, want %q", i, got, w)
			}
		case <-time.After(waitFor):
			t.Fatalf("frame %d (%q) not handled", i, w)
		}
	}
}

// wantEndedWith waits for the connection to end and checks the close code it ended with.
func (s *served) wantEndedWith(t *testing.T, code int) {
	t.Helper()
	select {
	case err := <-s.readErr:
		if got := s.conn.ClosedWith(err); got != code {
			t.Fatalf("closed with %d (%v), want %d", got, err, code)
		}
	case <-time.After(waitFor):
		t.Fatalf("the connection did not end (want %d)", code)
	}
	select {
	case <-s.conn.Done():
	default:
		t.Fatal("ended called before Done closed")
	}
}

// wantPong reads on the client until the server's pong comes, and checks its payload.
func (s *served) wantPong(t *testing.T, want string) {
	t.Helper()
	pong := make(chan string, 1)
	s.client.SetPongHandler(func(p string) error { pong <- p; return nil })
	go func() { _, _, _ = s.client.ReadMessage() }()
	select {
	case p := <-pong:
		if p != want {
			t.Fatalf("pong %q, want %q", p, want)
		}
	case <-time.After(waitFor):
		t.Fatalf("no pong for the ping %q", want)
	}
}

// The test connections must read event-driven, or these tests prove nothing about it.
func TestLoopbackConnectionsAreEventDriven(t *testing.T) {
	s := serve(t, Config{})
	if s.conn.events == nil {
		t.Fatal("a plain TCP connection reads on a goroutine")
	}
}

// The gate under gorilla still offers the socket's raw connection, which the writes that never
// wait rely on.
func TestGateKeepsRawConnForWrites(t *testing.T) {
	s := serve(t, Config{PingInterval: time.Minute, PongWait: 2 * time.Minute}) // keeps bc.Conn as it is
	sc, ok := s.conn.bc.Conn.(syscall.Conn)
	if !ok {
		t.Fatalf("the connection under gorilla (%T) hides the socket's raw connection", s.conn.bc.Conn)
	}
	if _, err := sc.SyscallConn(); err != nil {
		t.Fatal(err)
	}
}

// GoroutineReads reads on a goroutine, through the same gate, and frames still arrive.
func TestGoroutineReadsOption(t *testing.T) {
	s := serve(t, Config{GoroutineReads: true})
	if s.conn.events != nil {
		t.Fatal("GoroutineReads set, yet the connection is event-driven")
	}
	var stream []byte
	for _, w := range []string{"a", "b"} {
		stream = append(stream, textFrame(w)...)
	}
	if _, err := s.raw(t).Write(stream); err != nil {
		t.Fatal(err)
	}
	s.wantFrames(t, "a", "b")
}

// Frames that arrive a byte per TCP segment are put together and handled in order.
func TestFramesSplitByteByByte(t *testing.T) {
	s := serve(t, Config{})
	c := s.raw(t)
	var stream []byte
	want := []string{"first", strings.Repeat("m", 300), ""}
	for _, w := range want {
		stream = append(stream, textFrame(w)...)
	}
	// A ping in between is answered and not handed on.
	stream = append(stream, clientFrame(websocket.PingMessage, true, []byte("p1"))...)
	stream = append(stream, textFrame("last")...)
	want = append(want, "last")
	for i := range stream {
		if _, err := c.Write(stream[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	s.wantFrames(t, want...)
	s.wantPong(t, "p1")
}

// Many frames in one segment are all handled, in order, however many one wake may read.
func TestManyFramesInOneSegment(t *testing.T) {
	s := serve(t, Config{})
	var stream []byte
	var want []string
	for i := range 3 * maxMessagesPerWake {
		w := fmt.Sprintf("frame %d", i)
		want = append(want, w)
		stream = append(stream, textFrame(w)...)
		if i%7 == 0 {
			stream = append(stream, clientFrame(websocket.PongMessage, true, nil)...)
		}
	}
	if _, err := s.raw(t).Write(stream); err != nil {
		t.Fatal(err)
	}
	s.wantFrames(t, want...)
}

// A fragmented message with a ping between its fragments arrives whole; the ping is answered.
func TestFragmentedMessageWithPingBetween(t *testing.T) {
	s := serve(t, Config{})
	c := s.raw(t)
	if _, err := c.Write(clientFrame(websocket.TextMessage, false, []byte("hel"))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(clientFrame(websocket.PingMessage, true, []byte("mid"))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(clientFrame(0, true, []byte("lo"))); err != nil { // continuation
		t.Fatal(err)
	}
	s.wantFrames(t, "hello")
	s.wantPong(t, "mid")
}

// The peer's close frame ends the connection with its code.
func TestPeerCloseEndsConnection(t *testing.T) {
	s := serve(t, Config{})
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "tab closed")
	if err := s.client.WriteControl(websocket.CloseMessage, msg, time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	s.wantEndedWith(t, websocket.CloseGoingAway)
}

// A peer that vanishes (RST) ends the connection at once, as a broken one (1006).
func TestVanishedPeerEndsConnection(t *testing.T) {
	s := serve(t, Config{})
	c := s.raw(t)
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	s.wantEndedWith(t, websocket.CloseAbnormalClosure)
}

// A peer that stops halfway through a frame is reaped like a silent one: inside the header
// the partial header waits in the gate, with no goroutine; inside the payload the read waits
// only until PongWait.
func TestHalfSentFrameIsBounded(t *testing.T) {
	for name, cut := range map[string]int{"header": 3, "payload": 100} {
		t.Run(name, func(t *testing.T) {
			s := serve(t, Config{PingInterval: 50 * time.Millisecond, PongWait: 300 * time.Millisecond})
			if _, err := s.raw(t).Write(textFrame(strings.Repeat("x", 200))[:cut]); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-s.readErr:
				// The read deadline or the pinger, whichever comes first.
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("ended with %v, want a timeout", err)
				}
			case <-time.After(waitFor):
				t.Fatal("a half-sent frame held its connection for good")
			}
		})
	}
}

// Idle connections hold no goroutine, whatever they have sent before.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 50
	before := runtime.NumGoroutine()
	var handled atomic.Int64
	up := NewUpgrader(Config{}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		c.Start(func([]byte) { handled.Add(1) }, func(error) {})
	}))
	defer srv.Close()
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		clients[i] = ws
		if err := ws.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(waitFor)); err != nil {
			t.Fatal(err)
		}
	}
	// Each client holds its own net/http-free connection and no goroutine; the server side
	// may keep a few goroutines of its own (the poller, the listener), not one per socket.
	testutil.Eventually(t, waitFor, func() error {
		if h := handled.Load(); h != n {
			return fmt.Errorf("%d of %d frames handled", h, n)
		}
		if g := runtime.NumGoroutine() - before; g > 5 {
			return fmt.Errorf("%d goroutines more than before for %d idle connections", g, n)
		}
		return nil
	})
}

// Connections closing from both ends while their clients write: every connection ends once,
// and no frame is handled after its end.
func TestConnectionsClosingWhileFramesArrive(t *testing.T) {
	const n = 40
	var mu sync.Mutex
	ended := map[*Conn]int{}
	var late atomic.Int64
	up := NewUpgrader(Config{}, nil)
	conns := make(chan *Conn, n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		var over atomic.Bool
		c.Start(func(msg []byte) {
			if over.Load() {
				late.Add(1)
			}
			c.Send(msg)
		}, func(error) {
			over.Store(true)
			mu.Lock()
			ended[c]++
			mu.Unlock()
		})
		conns <- c
	}))
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range n {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		c := <-conns
		wg.Add(2)
		go func() { // the client writes until its connection breaks
			defer wg.Done()
			defer ws.Close()
			go func() {
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						return
					}
				}
			}()
			for j := 0; j < 10_000; j++ {
				if err := ws.WriteMessage(websocket.TextMessage, []byte("event")); err != nil {
					return
				}
				if i%2 == 1 && j == 50 { // half the clients vanish
					if tc, ok := ws.NetConn().(*net.TCPConn); ok {
						_ = tc.SetLinger(0)
					}
					return
				}
			}
		}()
		go func() { // the server closes the other half
			defer wg.Done()
			if i%2 == 0 {
				c.Close(DisconnectKicked)
			}
		}()
	}
	wg.Wait()
	testutil.Eventually(t, waitFor, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(ended) != n {
			return fmt.Errorf("%d of %d connections ended", len(ended), n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for c, k := range ended {
		if k != 1 {
			t.Fatalf("a connection ended %d times", k)
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("ended called before Done closed")
		}
	}
	if l := late.Load(); l != 0 {
		t.Fatalf("%d frames handled after their connection ended", l)
	}
}
