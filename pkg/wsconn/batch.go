package wsconn

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// batchConn lets several WebSocket frames leave in one write(2). gorilla writes each frame
// with its own conn.Write; a loopback write costs ~4 µs on a 2-core machine whatever its size,
// and batched frames cost ~1 µs each (README, Performance), so the flusher switches the conn into batching mode, lets gorilla
// frame every queued message into one buffer, and flushes it once.
//
// Control frames (ping, close) written by other goroutines go through Write too: mu keeps them
// from interleaving with a batch on the wire.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      *[]byte
	deadline time.Time // the latest write deadline asked for while batching
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBatch keeps one huge burst from pinning a large buffer in the pool.
const maxPooledBatch = 256 << 10

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		*b.buf = append(*b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

// SetWriteDeadline, while batching, only records the deadline. gorilla sets one for every frame,
// and each is a call into the runtime's poller: about a fifth of a saturated edge's CPU in a
// profile at 1k clients x 1000 msg/s. The batch leaves in one write, bounded by the latest.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	if b.batching {
		b.deadline = t
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	return b.Conn.SetWriteDeadline(t)
}

func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	b.buf = batchBufs.Get().(*[]byte)
	b.mu.Unlock()
}

// flush writes what the batch collected, leaves batching mode and says how many bytes went.
func (b *batchConn) flush() (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	buf := b.buf
	b.buf = nil
	var n int
	var err error
	if len(*buf) > 0 {
		if !b.deadline.IsZero() {
			err = b.Conn.SetWriteDeadline(b.deadline)
		}
		if err == nil {
			n, err = b.Conn.Write(*buf)
		}
	}
	b.deadline = time.Time{}
	if cap(*buf) <= maxPooledBatch {
		*buf = (*buf)[:0]
		batchBufs.Put(buf)
	}
	return n, err
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
