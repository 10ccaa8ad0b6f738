//go:build linux

package wsconn

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// Event-driven reads. Every plain-TCP socket is registered in one epoll instance, one-shot:
// when it becomes readable the poller starts a goroutine that reads every complete frame
// there is, then re-arms the registration and exits. An idle connection has no goroutine and
// no read buffer. A frame that has only partly arrived is finished by gorilla on that goroutine,
// bounded by PongWait; a header or a control frame that has partly arrived waits in the gate.
//
// The registration carries an id that is never reused, not the descriptor: an event that was
// already on its way when a connection ended finds no connection, never another one that got
// the same descriptor number. Every use of the descriptor goes through the connection's own
// syscall.RawConn, which refuses once the socket is closed; the registration is deleted
// before the socket is closed.

// newReadGate puts a frameGate under gorilla where epoll can watch the socket.
func newReadGate(c net.Conn) net.Conn {
	if _, ok := c.(*net.TCPConn); ok {
		return &frameGate{Conn: c}
	}
	return c
}

type poller struct {
	once  sync.Once
	fd    int
	err   error
	mu    sync.Mutex
	conns map[uint64]*eventReader // guarded by mu
	next  uint64                  // the last id given out; guarded by mu
}

// epoller is the process's one epoll instance, made on first use.
var epoller poller

func (p *poller) init() error {
	p.once.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			p.err = fmt.Errorf("epoll_create1: %w", err)
			return
		}
		p.fd, p.conns = fd, make(map[uint64]*eventReader)
		go p.run()
	})
	return p.err
}

// run waits for readable sockets and starts a read for each; it runs for the process's life.
func (p *poller) run() {
	evs := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.fd, evs, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Cannot happen with a valid epoll descriptor. Connections then stop reading and
			// the pinger reaps them, since no pong is read either.
			slog.Error("wsconn: epoll_wait failed, event-driven reads stop", "err", err)
			return
		}
		p.mu.Lock()
		for _, ev := range evs[:n] {
			if r := p.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; r != nil {
				go r.wake()
			}
		}
		p.mu.Unlock()
	}
}

// maxMessagesPerWake bounds one read goroutine's turn; a socket with more waiting is readable
// again at once when re-armed.
const maxMessagesPerWake = 64

// eventReader is one connection's registration and read state.
type eventReader struct {
	c        *Conn
	gate     *frameGate
	rc       syscall.RawConn
	stopping atomic.Bool // abort wants the read side to end

	mu       sync.Mutex // held by the goroutine reading or ending the connection
	id       uint64     // 0 until registered; guarded by mu
	handle   func(msg []byte)
	ended    func(err error)
	finished bool  // guarded by mu
	endErr   error // why it ended, for a Start that comes after; guarded by mu
}

// newEventReader prepares event-driven reads for c, or returns nil (gate nil: not a plain TCP
// socket; or no epoll), and c then reads on a goroutine.
func newEventReader(c *Conn, g *frameGate) *eventReader {
	if g == nil {
		return nil
	}
	sc, ok := g.Conn.(syscall.Conn)
	if !ok {
		g.pass = true
		return nil
	}
	rc, err := sc.SyscallConn()
	if err == nil {
		err = epoller.init()
	}
	if err != nil {
		c.log.Warn("wsconn: reading on a goroutine per connection", "err", err)
		g.pass = true
		return nil
	}
	return &eventReader{c: c, gate: g, rc: rc}
}

func (c *Conn) startEvents(handle func(msg []byte), ended func(err error)) bool {
	r := c.events
	if r == nil {
		return false
	}
	// Pongs that come inside a fragmented message reach gorilla, not the gate.
	c.ws.SetPongHandler(func(string) error { c.seen(); return nil })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handle, r.ended = handle, ended
	if r.finished { // closed before Start
		ended(r.endErr)
		return true
	}
	epoller.mu.Lock()
	epoller.next++
	r.id = epoller.next
	epoller.conns[r.id] = r
	epoller.mu.Unlock()
	if err := r.arm(unix.EPOLL_CTL_ADD); err != nil {
		r.finishLocked(err)
	}
	return true
}

func (r *eventReader) arm(op int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(r.id)), Pad: int32(uint32(r.id >> 32))}
	var err error
	if cerr := r.rc.Control(func(fd uintptr) { err = unix.EpollCtl(epoller.fd, op, int(fd), &ev) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// wake reads what the socket has: pings and pongs, then whole messages, then re-arms.
func (r *eventReader) wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	c := r.c
	for range maxMessagesPerWake {
		ready, err := r.gate.poll(r.readNow, r.control)
		if err != nil {
			r.finishLocked(err)
			return
		}
		if !ready {
			break
		}
		// A message has begun: gorilla reads it whole, waiting at most PongWait for the rest.
		// The deadline is set before stopping is checked, so an abort in between still ends
		// the read (abort sets stopping, then a deadline in the past).
		_ = c.bc.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
		if r.stopping.Load() {
			r.finishLocked(errAborted)
			return
		}
		typ, msg, err := c.ws.ReadMessage()
		if err != nil {
			r.finishLocked(c.readError(err))
			return
		}
		// A deadline left in place would fail the next poll's read.
		_ = c.bc.SetReadDeadline(time.Time{})
		c.seen()
		if typ == websocket.TextMessage || typ == websocket.BinaryMessage {
			r.handle(msg)
		}
	}
	if err := r.arm(unix.EPOLL_CTL_MOD); err != nil {
		r.finishLocked(err)
	}
}

// readNow reads what has arrived without waiting: (0, nil) when nothing has.
func (r *eventReader) readNow(p []byte) (int, error) {
	var n int
	var err error
	if cerr := r.rc.Read(func(fd uintptr) bool {
		for {
			n, err = unix.Read(int(fd), p)
			if err != unix.EINTR {
				return true // never wait: epoll says when there is more
			}
		}
	}); cerr != nil {
		return 0, cerr
	}
	switch {
	case err == unix.EAGAIN:
		return 0, nil
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0:
		return 0, errPeerGone
	}
	return n, nil
}

// control handles a ping or pong the gate read: any frame shows the peer is alive, and a ping
// is answered as gorilla would.
func (r *eventReader) control(op byte, payload []byte) {
	c := r.c
	c.seen()
	if op == opPing {
		err := c.ws.WriteControl(websocket.PongMessage, payload, time.Now().Add(c.cfg.WriteTimeout))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			c.mu.Lock()
			log := c.log
			c.mu.Unlock()
			log.Debug("websocket pong failed", "err", err)
		}
	}
}

// errPeerGone is the end of the stream between frames, the error gorilla gives for it too.
var errPeerGone = &websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}

// errAborted ends a read that abort stopped before gorilla began it.
var errAborted = errors.New("websocket read ended by the server")

// abort ends the connection from outside a read: it unblocks a read under way, then ends the
// connection unless that read did.
func (r *eventReader) abort(cause error) {
	r.stopping.Store(true)
	_ = r.c.bc.SetReadDeadline(time.Unix(1, 0))
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.finished {
		r.finishLocked(cause)
	}
}

// finishLocked ends the connection: deregister, close, then tell Done and ended. mu is held.
func (r *eventReader) finishLocked(err error) {
	r.finished, r.endErr = true, err
	if r.id != 0 {
		epoller.mu.Lock()
		delete(epoller.conns, r.id)
		epoller.mu.Unlock()
		_ = r.rc.Control(func(fd uintptr) { _ = unix.EpollCtl(epoller.fd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	}
	c := r.c
	c.closeQuietly()
	_ = c.bc.Close()
	close(c.done)
	if r.ended != nil {
		r.ended(err)
	}
}
