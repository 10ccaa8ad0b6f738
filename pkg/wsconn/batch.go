package wsconn

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// batchConn lets several WebSocket frames leave in one write(2). A loopback write costs ~4 µs
// on a 2-core machine whatever its size, and batched frames cost ~1 µs each (README,
// Performance), so the flusher frames every queued message straight into one buffer and writes
// it once.
//
// Server data frames are simple (unmasked, no extension is negotiated), so writeFrames frames
// them itself: going through gorilla's writer cost a copy into its buffer, another into the
// batch, and a deadline per frame. gorilla keeps the handshake, the reads and the control
// frames (ping, pong, close), which reach the socket through Write; mu keeps them from
// interleaving with a batch on the wire, and once a close frame has gone no data frame follows.
type batchConn struct {
	net.Conn
	mu        sync.Mutex
	upgraded  bool      // the handshake is done: what Write carries from here on is frames
	closeSent bool      // a close frame went out; no data frame may follow it
	deadline  time.Time // the write deadline last set on the socket

	raw        syscall.RawConn // the socket's own, for writes that never wait; nil: none
	rawChecked bool            // raw has been looked for
	rawWrite   func(fd uintptr) bool
	rawP       []byte // rawWrite's argument and results, here so a write allocates nothing
	rawN       int
	rawErr     error
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBatch keeps one huge burst from pinning a large buffer in the pool.
const maxPooledBatch = 256 << 10

// Write carries what gorilla writes itself: the handshake's answer, then control frames, each
// whole in one call.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.upgraded && len(p) > 0 && p[0]&0x0f == websocket.CloseMessage {
		b.closeSent = true
	}
	return b.Conn.Write(p)
}

// SetWriteDeadline forgets the deadline writeFrames last set, so it sets its own again.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deadline = time.Time{}
	return b.Conn.SetWriteDeadline(t)
}

// deadlineSlack is how far a batch's deadline may fall short of the write timeout, so that a
// busy connection moves the socket's deadline (a call into the runtime's poller) only now and
// then rather than for every batch.
const deadlineSlack = 10

// writeFrames writes frames as text frames in one write, bounded by timeout (to within a
// tenth), and says how many bytes went.
func (b *batchConn) writeFrames(frames [][]byte, timeout time.Duration) (int, error) {
	buf := frameBatch(frames)
	defer recycle(buf)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closeSent {
		return 0, websocket.ErrCloseSent
	}
	if err := b.freshDeadline(timeout); err != nil {
		return 0, err
	}
	return b.Conn.Write(*buf)
}

// frameBatch frames frames as text frames into a pooled buffer; recycle gives it back.
func frameBatch(frames [][]byte) *[]byte {
	buf := batchBufs.Get().(*[]byte)
	for _, f := range frames {
		*buf = append(appendTextHeader(*buf, len(f)), f...)
	}
	return buf
}

func recycle(buf *[]byte) {
	if cap(*buf) <= maxPooledBatch {
		*buf = (*buf)[:0]
		batchBufs.Put(buf)
	}
}

// freshDeadline moves the socket's write deadline to timeout from now unless it is already
// within a tenth of that; mu must be held.
func (b *batchConn) freshDeadline(timeout time.Duration) error {
	want := time.Now().Add(timeout)
	if !b.deadline.Before(want.Add(-timeout / deadlineSlack)) {
		return nil
	}
	if err := b.Conn.SetWriteDeadline(want); err != nil {
		return err
	}
	b.deadline = want
	return nil
}

// appendTextHeader appends the header of a final, unmasked text frame of n payload bytes
// (RFC 6455 §5.2).
func appendTextHeader(b []byte, n int) []byte {
	const finText = 0x80 | websocket.TextMessage
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, finText, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, finText, 127), uint64(n))
	}
}

// hijackWriter hands gorilla a batchConn in place of the raw connection.
type hijackWriter struct {
	http.ResponseWriter
	conn *batchConn
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &batchConn{Conn: newReadGate(c)}
	return h.conn, rw, nil
}
