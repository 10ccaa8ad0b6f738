package wsconn

import (
	"bytes"
	"errors"
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
