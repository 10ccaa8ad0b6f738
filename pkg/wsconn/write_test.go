package wsconn

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The data frames the batch frames itself read back whole in a standard client, at every
// header size RFC 6455 has (7-bit, 16-bit and 64-bit lengths, at their edges).
func TestOwnFramingAtEveryLengthSize(t *testing.T) {
	s := serve(t, Config{})
	sizes := []int{0, 1, 125, 126, 127, 1000, 65535, 65536, 200_000}
	var want [][]byte
	for i, n := range sizes {
		f := bytes.Repeat([]byte{byte('a' + i)}, n)
		want = append(want, f)
		if !s.conn.Send(f) {
			t.Fatalf("Send of %d bytes refused", n)
		}
	}
	for i, w := range want {
		_ = s.client.SetReadDeadline(time.Now().Add(waitFor))
		typ, got, err := s.client.ReadMessage()
		if err != nil || typ != websocket.TextMessage || !bytes.Equal(got, w) {
			t.Fatalf("frame %d (%d bytes): type %d, %d bytes, %v", i, len(w), typ, len(got), err)
		}
	}
}

// Once a close frame has gone (here the way gorilla's reader answers a peer's close), no data
// frame may follow it on the wire: the batch is refused and the client sees only the close.
func TestNoDataFrameAfterTheCloseFrame(t *testing.T) {
	s := serve(t, Config{})
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done")
	if err := s.conn.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.conn.bc.writeFrames([][]byte{[]byte("late")}, time.Second); !errors.Is(err, websocket.ErrCloseSent) {
		t.Fatalf("a batch after the close frame: %v, want ErrCloseSent", err)
	}
	got, err := s.readAll(t)
	if len(got) != 0 {
		t.Fatalf("the client read %q after the close", got)
	}
	wantClose(t, err, websocket.CloseNormalClosure)
}

// rawConfig leaves the server's socket unwrapped (serve wraps it only with the default ping
// interval), so a Writer takes the non-blocking path.
var rawConfig = Config{PingInterval: time.Hour, PongWait: 2 * time.Hour, WriteTimeout: time.Hour}

// A Writer writes nothing until Flush, then each connection's frames in order.
func TestWriterWritesAtFlush(t *testing.T) {
	var w Writer
	var all []*served
	for range 3 {
		all = append(all, serve(t, rawConfig))
	}
	for i := range 5 {
		for _, s := range all {
			if !s.conn.SendVia(fmt.Appendf(nil, "frame %d", i), &w) {
				t.Fatal("SendVia refused")
			}
		}
	}
	if len(w.dirty) != len(all) {
		t.Fatalf("the writer holds %d connections, want each of the %d once", len(w.dirty), len(all))
	}
	_ = all[0].client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := all[0].client.ReadMessage(); err == nil {
		t.Fatal("a frame arrived before Flush")
	}
	w.Flush()
	for k, s := range all {
		if k == 0 {
			continue // its read deadline passed above, which ends a gorilla reader for good
		}
		for i := range 5 {
			_ = s.client.SetReadDeadline(time.Now().Add(waitFor))
			_, msg, err := s.client.ReadMessage()
			if err != nil || string(msg) != fmt.Sprintf("frame %d", i) {
				t.Fatalf("connection %d frame %d: %q, %v", k, i, msg, err)
			}
		}
	}
}

// A connection whose socket is full does not hold up the Writer's others: Flush returns (the
// write timeout is an hour), the neighbour gets its frame, and once the stalled client reads,
// its frames arrive whole and in order, the half-written one included.
//
// The kernel sizes socket buffers its own way (what SetWriteBuffer asks is doubled, and more
// may be in flight on loopback), so now and then 80 KB all fit and the socket never fills:
// that attempt proves nothing and is made again, a few times at most.
func TestWriterHandsOffAFullSocket(t *testing.T) {
	for attempt := 1; attempt <= 5; attempt++ {
		if handOffToFullSocket(t) {
			return
		}
		t.Logf("attempt %d: the stalled client's socket took everything; again", attempt)
	}
	t.Fatal("the stalled client's socket never filled in 5 attempts: the test proves nothing")
}

// handOffToFullSocket runs one attempt; false means the socket did not fill.
func handOffToFullSocket(t *testing.T) bool {
	stalled, neighbour := serve(t, rawConfig), serve(t, rawConfig)
	if err := serverTCP(t, stalled).SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if err := stalled.client.NetConn().(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	var w Writer
	big := bytes.Repeat([]byte("x"), 2000)
	const n = 40 // 80 KB: far more than both socket buffers
	for i := range n {
		if !stalled.conn.SendVia(fmt.Appendf(nil, "%d %s", i, big), &w) {
			t.Fatalf("SendVia %d refused", i)
		}
	}
	neighbour.conn.SendVia([]byte("hello"), &w)
	w.Flush()
	_ = neighbour.client.SetReadDeadline(time.Now().Add(waitFor))
	if _, msg, err := neighbour.client.ReadMessage(); err != nil || string(msg) != "hello" {
		t.Fatalf("neighbour: %q, %v", msg, err)
	}
	filled := stalled.conn.Backlog() > 0
	for i := range n {
		_ = stalled.client.SetReadDeadline(time.Now().Add(waitFor))
		_, msg, err := stalled.client.ReadMessage()
		if err != nil || string(msg) != fmt.Sprintf("%d %s", i, big) {
			t.Fatalf("stalled client frame %d: %d bytes, %v", i, len(msg), err)
		}
	}
	return filled
}

// A connection whose socket is held by another writer (a ping or close frame stuck in a
// blocking write to a full socket) does not hold up the Writer either: Flush returns without
// waiting for the lock, the neighbour gets its frame, and the held connection's frames follow
// once the socket is free.
func TestWriterSkipsABusySocket(t *testing.T) {
	busy, neighbour := serve(t, rawConfig), serve(t, rawConfig)
	var w Writer
	busy.conn.SendVia([]byte("queued"), &w)
	neighbour.conn.SendVia([]byte("hello"), &w)
	busy.conn.bc.mu.Lock() // as a control frame's write holds it
	flushed := make(chan struct{})
	go func() {
		w.Flush()
		close(flushed)
	}()
	select {
	case <-flushed:
	case <-time.After(waitFor):
		busy.conn.bc.mu.Unlock()
		t.Fatal("Flush waited for a busy socket's lock")
	}
	_ = neighbour.client.SetReadDeadline(time.Now().Add(waitFor))
	if _, msg, err := neighbour.client.ReadMessage(); err != nil || string(msg) != "hello" {
		t.Fatalf("neighbour: %q, %v", msg, err)
	}
	busy.conn.bc.mu.Unlock()
	_ = busy.client.SetReadDeadline(time.Now().Add(waitFor))
	if _, msg, err := busy.client.ReadMessage(); err != nil || string(msg) != "queued" {
		t.Fatalf("busy client after the lock was freed: %q, %v", msg, err)
	}
}
