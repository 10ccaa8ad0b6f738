package wsconn

import (
	"errors"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/pkg/metrics"
)

// Writer writes many connections from one producer goroutine (a hub shard): SendVia queues a
// frame and notes the connection, and Flush, after the producer's burst, writes each noted
// connection in turn with a write that never waits. Starting a goroutine for every connection
// at every burst cost more than the frames' framing. A connection whose socket cannot take its
// batch at once is handed to a goroutine of its own for the rest, so it never holds back the
// producer's other connections; the send queue bounds it as before.
//
// A Writer belongs to one goroutine. It holds each connection at most once between two
// Flushes (the connection's flushing flag), so it is bounded by the producer's connections.
type Writer struct {
	dirty []*Conn
}

// Flush writes what the connections given frames since the last Flush have queued.
func (w *Writer) Flush() {
	for i, c := range w.dirty {
		w.dirty[i] = nil
		c.writeNow()
	}
	w.dirty = w.dirty[:0]
}

// writeNow writes the queue batch after batch while the socket takes each whole; what the
// socket cannot take now goes on on a goroutine of the connection's own.
func (c *Conn) writeNow() {
	var done [][]byte
	for {
		batch, ok := c.nextBatch(done)
		if !ok {
			return
		}
		buf, off, err := c.bc.tryWriteFrames(batch, c.cfg.WriteTimeout)
		if err != nil {
			c.writeFailed(err, len(batch))
			return
		}
		metrics.WSFramesWritten.Add(float64(len(batch)))
		clear(batch)
		done = batch
		if buf != nil {
			go c.finish(buf, off)
			return
		}
	}
}

// finish writes the rest of a batch the socket could not take at once (c.bc.mu is held for it,
// so nothing interleaves with the half-written frame), then goes on as the connection's flusher.
func (c *Conn) finish(buf *[]byte, off int) {
	if err := c.bc.finish(buf, off, c.cfg.WriteTimeout); err != nil {
		c.writeFailed(err, 0)
		return
	}
	c.flush()
}

// tryWriteFrames frames and writes without waiting for the socket, nor for its lock. When the
// socket takes it all, buf is nil. Otherwise buf[off:] is left to write and b.mu stays held (off
// -1: the lock was busy, nothing is written and b.mu is not held): the caller must hand buf to
// finish, which writes the rest, releases b.mu and recycles buf. A socket that
// offers no non-blocking write (a wrapped one) always leaves everything to finish.
func (b *batchConn) tryWriteFrames(frames [][]byte, timeout time.Duration) (buf *[]byte, off int, err error) {
	buf = frameBatch(frames)
	if !b.mu.TryLock() {
		// Another goroutine has the socket: a ping, pong or close frame in a blocking write to
		// a client whose socket is full. Waiting for it here would stall the whole shard, so the
		// batch goes to finish, on the connection's own goroutine (off -1: not locked yet).
		return buf, -1, nil
	}
	if b.closeSent {
		b.mu.Unlock()
		recycle(buf)
		return nil, 0, websocket.ErrCloseSent
	}
	// The socket's deadline applies to raw writes too (one long past would fail them), so it
	// is kept fresh here as for a blocking write.
	if err := b.freshDeadline(timeout); err != nil {
		b.mu.Unlock()
		recycle(buf)
		return nil, 0, err
	}
	n, err := b.writeNonBlocking(*buf)
	metrics.WSBytesWritten.Add(float64(n))
	switch {
	case err != nil:
		b.mu.Unlock()
		recycle(buf)
		return nil, 0, err
	case n == len(*buf):
		b.mu.Unlock()
		recycle(buf)
		return nil, 0, nil
	default:
		return buf, n, nil
	}
}

// writeNonBlocking writes what the socket takes now: 0 when it takes nothing or has no
// non-blocking write.
func (b *batchConn) writeNonBlocking(p []byte) (int, error) {
	if !b.rawChecked {
		b.rawChecked = true
		if sc, ok := b.Conn.(syscall.Conn); ok {
			b.raw, _ = sc.SyscallConn()
			// Made once per connection: a closure made per write escaped to the heap.
			b.rawWrite = func(fd uintptr) bool {
				b.rawN, b.rawErr = syscall.Write(int(fd), b.rawP)
				return true // never wait for the socket here: that is finish's job
			}
		}
	}
	if b.raw == nil {
		return 0, nil
	}
	b.rawP = p
	err := b.raw.Write(b.rawWrite)
	n, werr := b.rawN, b.rawErr
	b.rawP, b.rawErr = nil, nil
	switch {
	case err != nil:
		return 0, err
	case errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.EINTR):
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

// finish writes buf[off:] with the blocking write, releases b.mu (taken by tryWriteFrames) and
// recycles buf.
func (b *batchConn) finish(buf *[]byte, off int, timeout time.Duration) error {
	defer recycle(buf)
	if off < 0 { // tryWriteFrames found the socket busy and wrote nothing
		b.mu.Lock()
		off = 0
		if b.closeSent {
			b.mu.Unlock()
			return websocket.ErrCloseSent
		}
	}
	defer b.mu.Unlock()
	if err := b.freshDeadline(timeout); err != nil {
		return err
	}
	n, err := b.Conn.Write((*buf)[off:])
	metrics.WSBytesWritten.Add(float64(n))
	return err
}
